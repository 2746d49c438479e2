#!/usr/bin/env python
"""Benchmark: training throughput of 1 vs 2 CPU workers (GLOO) of tools/train_net.py, side by side.

    python benchmarks/bench_ddp.py [--iters 40] [--size 256] [--workers 1 2] [--repeats 1]
        [--oversubscribed] [--cache /tmp/rsrcnn_bench_ddp]

Trains the CPU-sized row E (configs/PWML-Tiny) on a synthetic phantom cohort of
--size px slices, 2 images per worker per iteration (SOLVER.IMS_PER_BATCH 2 x
workers), without evaluation. The time per iteration is detectron2's "Overall
training speed" line: it leaves out the first 3 iterations and the hooks' time.
Runs alternate (1, 2, 1, 2, ... workers) so that a change of load hits both.
OMP_NUM_THREADS and MKL_NUM_THREADS are removed from the runs' environment so the
tool picks each worker's threads; --oversubscribed adds a run of the largest worker
count with every worker on all cores (as before the fix). Goal: 2 workers >= 0.9x
the images/s of 1 worker. Prints a markdown table; exit status 0 either way.
"""

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsrcnn_d2.data import convert_pwml
from rsrcnn_d2.engine.ddp import _usable_cores
from rsrcnn_d2.experiments import TRAIN_NET_MODULE
from rsrcnn_d2.model_zoo import row_config
from rsrcnn_d2.synth import write_synthetic_cohort

CONFIG = row_config("E")
SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")
THREADS = re.compile(r"per-worker threads: (\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cohort(cache: Path, size: int) -> Path:
    """The converted phantom cohort (made once, then reused from the cache)."""
    root = cache / f"s{size}"
    if not (root / "pwml" / "annotations" / "instances_train.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_synthetic_cohort(
            root / "raw", num_subjects=8, size=size, depth=8, seed=3, lesion_fraction=0.5
        )
        convert_pwml(root / "raw", root / "pwml", workers=1)
    return root


def train(root: Path, workers: int, iters: int, size: int, threads=None):
    """One run of train_net; returns (s / it, iterations timed, threads per worker as logged)."""
    out = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["DETECTRON2_DATASETS"] = str(root)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        "-m",
        TRAIN_NET_MODULE,
        "--config-file",
        CONFIG,
        "--num-gpus",
        str(workers),
        "--dist-url",
        f"tcp://127.0.0.1:{_free_port()}",
        "OUTPUT_DIR",
        str(out),
        "MODEL.DEVICE",
        "cpu",
        "SOLVER.IMS_PER_BATCH",
        str(2 * workers),
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.LR_SCHEDULER_NAME",
        "WarmupMultiStepLR",
        "SOLVER.STEPS",
        "()",
        "DATASETS.VAL",
        "()",
        "DATASETS.TEST",
        "()",
        "TEST.EVAL_PERIOD",
        "0",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "INPUT.CROP_TO_HEAD",
        "False",
        "INPUT.MIN_SIZE_TRAIN",
        f"({size},)",
        "INPUT.MAX_SIZE_TRAIN",
        str(size),
        "SEED",
        "1",
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        speed = SPEED.search(log)
        if proc.returncode != 0 or speed is None:
            sys.exit(
                f"bench_ddp: train_net failed ({workers} workers, exit {proc.returncode}):\n"
                f"{log[-3000:]}"
            )
        logged = THREADS.search((out / "log.txt").read_text())
        return float(speed.group(2)), int(speed.group(1)), int(logged.group(1)) if logged else None
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--iters", type=int, default=40, help="iterations per run; the first 3 are not timed"
    )
    p.add_argument(
        "--size", type=int, default=256, help="slice size in px (the tiny config trains at 256)"
    )
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=1, help="runs of each worker count, alternating")
    p.add_argument(
        "--oversubscribed",
        action="store_true",
        help="also the largest worker count with all cores in every worker (before the fix)",
    )
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rsrcnn_bench_ddp"))
    args = p.parse_args(argv)
    if args.iters < 4:
        p.error("--iters must be at least 4 (detectron2 leaves the first 3 out of its timing)")

    root = cohort(Path(args.cache), args.size)
    cores = _usable_cores()
    load = os.getloadavg()[0]
    runs = [(w, None) for _ in range(args.repeats) for w in args.workers]
    if args.oversubscribed:
        runs.append((max(args.workers), cores))
    results = {}
    for workers, threads in runs:
        t0 = time.perf_counter()
        s_per_it, timed, logged = train(root, workers, args.iters, args.size, threads)
        print(
            f"{workers} worker(s), OMP_NUM_THREADS {threads or 'unset'}: "
            f"{s_per_it:.4f} s/it over {timed} iterations, threads per worker: {logged} "
            f"({time.perf_counter() - t0:.0f} s with start-up)",
            flush=True,
        )
        results.setdefault((workers, threads), []).append((s_per_it, logged))

    print(
        f"\nrow E tiny (R-18-FPN), {args.size}x{args.size} slices, "
        "2 images per worker per iteration, "
        f"{args.iters} iterations (first 3 not timed), {cores} usable cores, "
        f"Python {platform.python_version()}, "
        f"load average {load:.1f} before the runs, {os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| workers | threads per worker | images / iteration "
        "| s / iteration | images / s | vs 1 worker |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    single = None
    for (workers, threads), rows in results.items():
        s_per_it = min(s for s, _ in rows)  # the least disturbed run
        rate = 2 * workers / s_per_it
        if workers == 1 and threads is None:
            single = rate
        relative = f"{rate / single:.2f}x" if single else "-"
        shown = rows[0][1] if threads is None else f"{threads} (all cores)"
        print(f"| {workers} | {shown} | {2 * workers} | {s_per_it:.3f} | {rate:.2f} | {relative} |")
    two = results.get((2, None))
    if single and two:
        ratio = 4 / min(s for s, _ in two) / single
        verdict = "met" if ratio >= 0.9 else "NOT met"
        print(f"\n2 workers: {ratio:.2f}x the images/s of 1 worker (goal >= 0.9x): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
