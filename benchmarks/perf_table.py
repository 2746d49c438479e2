#!/usr/bin/env python
"""The performance table: every figure beside its baseline, measured in one run.

    python benchmarks/perf_table.py [--write docs/BENCHMARKS.md] [--quick]

Figures (ours / baseline):
- inference s/slice, row E / row B, same backbone, same synthetic slices:
  paper scale (R-101-FPN, 512x512, 50 and 10 detections) and the CPU twin
  (R-18, 256x256, configs/PWML-Tiny); the DCRF's share of row E;
- training s/iteration (2 slices, forward + backward + SGD step), E / B, both scales;
- peak resident memory (RSS) of inference and of training, E / B;
- conversion throughput (tools/prepare_pwml.py's convert_pwml) / reading the
  same NIfTI volumes and doing nothing else (the decompression floor);
- evaluator throughput (per-slice metrics) / the same figures over whole slices.

Each measurement runs in a fresh child process, so its peak RSS is its own;
rows B and E alternate (B, E, B, E) so machine load falls on both alike. Weights
are random (nothing can be downloaded here): the score threshold is 0 and the
number of detections is fixed by TEST.DETECTIONS_PER_IMAGE; R-101 uses GroupNorm
because a random FrozenBN ResNet-101 overflows. --write replaces the section
between the perf-table markers of the given Markdown file.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAMILY = {"paper": "r101", "cpu": "tiny"}  # rsrcnn_d2.model_zoo's row families
SIZE = {"paper": 512, "cpu": 256}
SCALE_NAME = {"paper": "R-101-FPN, 512×512", "cpu": "R-18 CPU twin, 256×256"}
BEGIN, END = "<!-- perf-table:begin -->", "<!-- perf-table:end -->"
RESULT = "PERF-RESULT "


# --- children: one measurement each -------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _slices(scale: str, count: int, with_instances: bool):
    import numpy as np
    import torch

    from rsrcnn_d2.data.instances import mask_to_instances
    from rsrcnn_d2.synth.phantom import synthetic_slice

    out = []
    for seed in range(count):
        image, mask = synthetic_slice(SIZE[scale], seed=seed)
        x = {
            "image": torch.from_numpy(np.repeat(image[None], 3, 0)),
            "height": image.shape[0],
            "width": image.shape[1],
        }
        if with_instances:
            x["instances"] = mask_to_instances(mask)
        out.append(x)
    return out


def child_infer(scale: str, row: str, detections: int, slices: int) -> dict:
    import torch
    from bench_inference import build

    _, model = build(row, detections, FAMILY[scale])
    inputs = _slices(scale, slices, False)
    times, instances = [], 0
    with torch.no_grad():
        model([inputs[0]])  # warm-up
        if model.dcrf is not None:
            model.dcrf.seconds = 0.0
        for x in inputs:
            start = time.perf_counter()
            instances += len(model([x])[0]["instances"])
            times.append(time.perf_counter() - start)
    return {
        "times": times,
        "dcrf_s": model.dcrf.seconds if model.dcrf is not None else 0.0,
        "instances": instances / len(inputs),
        "peak_rss_mib": peak_rss_mib(),
    }


def child_train(scale: str, row: str, iters: int, warmup: int) -> dict:
    from bench_inference import build
    from detectron2.utils.events import EventStorage

    from rsrcnn_d2.solver import build_optimizer  # the training's: CLIP_TYPE global_norm too

    cfg, model = build(row, 50, FAMILY[scale])
    model.train()
    optimizer = build_optimizer(cfg, model)
    data = _slices(scale, 4, True)
    times = []
    with EventStorage(0):  # the losses log their statistics there
        _train_steps(model, optimizer, data, warmup, iters, times)
    return {"times": times, "peak_rss_mib": peak_rss_mib()}


def _train_steps(model, optimizer, data, warmup: int, iters: int, times: list) -> None:
    for i in range(warmup + iters):
        batch = [data[(2 * i) % 4], data[(2 * i + 1) % 4]]
        start = time.perf_counter()
        losses = sum(model(batch).values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)


def _read_volume(paths):
    import nibabel as nib
    import numpy as np

    return sum(int(np.asanyarray(nib.load(str(p)).dataobj).size) for p in paths)


def child_convert(cohort: str, workers: int, what: str) -> dict:
    from multiprocessing import Pool

    from rsrcnn_d2.data.convert import convert_pwml
    from rsrcnn_d2.data.sources import nnunet_subjects

    subjects = nnunet_subjects(cohort)
    start = time.perf_counter()
    if what == "read":  # the floor: decompress and read every image and mask, nothing else
        with Pool(workers) as pool:
            pool.map(_read_volume, [(s.image, s.mask) for s in subjects])
        slices = None
    else:
        with tempfile.TemporaryDirectory(prefix="perf_convert_") as tmp:
            slices = convert_pwml(cohort, Path(tmp) / "pwml", workers=workers)["num_images"]
    return {
        "seconds": time.perf_counter() - start,
        "volumes": len(subjects),
        "slices": slices,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_evaluate(slices: int, baseline_slices: int) -> dict:
    import numpy as np
    from bench_evaluator import make_pair, whole_slice_metrics

    from rsrcnn_d2.evaluation import slice_metrics

    rng = np.random.default_rng(0)
    pool = [make_pair(rng) for _ in range(200)]
    start = time.perf_counter()
    for i in range(slices):
        slice_metrics(*pool[i % len(pool)])
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(baseline_slices):
        whole_slice_metrics(*pool[i % len(pool)])
    base = time.perf_counter() - start
    return {
        "ours_per_slice": ours / slices,
        "base_per_slice": base / baseline_slices,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_idle() -> dict:
    """The floor under every other child's RSS: the interpreter with the libraries imported."""
    import importlib

    for name in ("torch", "detectron2.modeling", "rsrcnn_d2"):
        importlib.import_module(name)
    return {"peak_rss_mib": peak_rss_mib()}


CHILDREN = {
    "idle": child_idle,
    "infer": child_infer,
    "train": child_train,
    "convert": child_convert,
    "evaluate": child_evaluate,
}


def run_child(kind: str, **kwargs) -> dict:
    spec = json.dumps({"kind": kind, "kwargs": kwargs})
    proc = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"benchmark child {kind} {kwargs} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT) :])


# --- parent: schedule, tabulate --------------------------------------------------------------


def alternate(kind: str, repeats: int, progress, **kwargs) -> dict:
    """Run row B and row E children alternately; pool their times, keep the largest RSS."""
    pooled = {
        "B": {"times": [], "peak_rss_mib": 0.0, "dcrf_s": 0.0, "instances": []},
        "E": {"times": [], "peak_rss_mib": 0.0, "dcrf_s": 0.0, "instances": []},
    }
    for _ in range(repeats):
        for row in ("B", "E"):
            progress(f"{kind} {kwargs} row {row}")
            r = run_child(kind, row=row, **kwargs)
            p = pooled[row]
            p["times"] += r["times"]
            p["peak_rss_mib"] = max(p["peak_rss_mib"], r["peak_rss_mib"])
            p["dcrf_s"] += r.get("dcrf_s", 0.0)
            p["instances"].append(r.get("instances", 0))
    return pooled


def make_cohort(subjects: int, size: int, depth: int) -> Path:
    from rsrcnn_d2.synth.phantom import write_synthetic_cohort

    cohort = Path(tempfile.gettempdir()) / "rsrcnn_perf_cohort" / f"n{subjects}_s{size}_d{depth}"
    write_synthetic_cohort(
        cohort, subjects, size, depth, seed=0, lesion_fraction=0.1, distinct_slices=4, workers=2
    )
    return cohort


def machine() -> str:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB, no GPU used; Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"numpy {numpy.__version__}"
    )


def table_rows(infer, train, conv, ev, cohort_shape):
    """(figure, ours, value, baseline, value, ratio) rows from the children's results."""
    med = statistics.median
    rows = []
    for (scale, dets), r in infer.items():
        b, e = med(r["B"]["times"]), med(r["E"]["times"])
        rows.append(
            (
                f"inference, {SCALE_NAME[scale]}, {dets} detections (s/slice)",
                "row E",
                e,
                "row B",
                b,
                f"{e / b:.2f}×",
            )
        )
        share = r["E"]["dcrf_s"] / sum(r["E"]["times"])
        rows.append(
            (
                f"DCRF inside row E, {SCALE_NAME[scale]}, {dets} detections (s/slice)",
                "DCRF",
                r["E"]["dcrf_s"] / len(r["E"]["times"]),
                "row E total",
                statistics.mean(r["E"]["times"]),
                f"{100 * share:.1f} %",
            )
        )
    for scale, r in train.items():
        b, e = med(r["B"]["times"]), med(r["E"]["times"])
        rows.append(
            (
                f"training, {SCALE_NAME[scale]}, 2 slices/iter (s/iter)",
                "row E",
                e,
                "row B",
                b,
                f"{e / b:.2f}×",
            )
        )
    for (scale, dets), r in infer.items():
        if dets == 50:
            b, e = r["B"]["peak_rss_mib"], r["E"]["peak_rss_mib"]
            rows.append(
                (
                    f"peak RSS, inference, {SCALE_NAME[scale]} (MiB)",
                    "row E",
                    e,
                    "row B",
                    b,
                    f"{e / b:.2f}×",
                )
            )
    for scale, r in train.items():
        b, e = r["B"]["peak_rss_mib"], r["E"]["peak_rss_mib"]
        rows.append(
            (
                f"peak RSS, training, {SCALE_NAME[scale]} (MiB)",
                "row E",
                e,
                "row B",
                b,
                f"{e / b:.2f}×",
            )
        )
    read_s, conv_s = (
        med([c["seconds"] for c in conv["read"]]),
        med([c["seconds"] for c in conv["convert"]]),
    )
    vols = conv["convert"][0]["volumes"]
    rows.append(
        (
            f"conversion, {vols} volumes of {cohort_shape[1]}²×{cohort_shape[2]}, "
            "2 workers (volumes/s)",
            "convert_pwml",
            vols / conv_s,
            "read volumes only",
            vols / read_s,
            f"{read_s / conv_s:.2f}× (time {conv_s / read_s:.2f}×)",
        )
    )
    rows.append(
        (
            "evaluator per-slice metrics, 512×512 (slices/s)",
            "slice_metrics",
            1 / ev["ours_per_slice"],
            "whole-slice",
            1 / ev["base_per_slice"],
            f"{ev['base_per_slice'] / ev['ours_per_slice']:.1f}×",
        )
    )

    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="few repetitions, for checking the script")
    p.add_argument("--write", help="Markdown file whose perf-table section is replaced")
    args = p.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(RESULT + json.dumps(CHILDREN[spec["kind"]](**spec["kwargs"])), flush=True)
        return 0

    q = args.quick
    n_infer = {"paper": 2 if q else 8, "cpu": 3 if q else 20}
    n_train = {"paper": 1 if q else 4, "cpu": 2 if q else 20}
    repeats = 1 if q else 2
    cohort_shape = (4, 128, 20) if q else (20, 256, 60)
    eval_n, eval_base = (200, 20) if q else (5000, 250)
    t_start = time.time()

    def progress(what):
        print(f"[{time.time() - t_start:6.0f} s] {what}", file=sys.stderr, flush=True)

    infer, train = {}, {}
    for scale, dets in (("paper", 50), ("paper", 10), ("cpu", 50), ("cpu", 10)):
        infer[scale, dets] = alternate(
            "infer", repeats, progress, scale=scale, detections=dets, slices=n_infer[scale]
        )
    for scale in ("paper", "cpu"):
        train[scale] = alternate(
            "train", repeats, progress, scale=scale, iters=n_train[scale], warmup=1
        )
    progress("synthetic cohort for conversion (cached)")
    cohort = make_cohort(*cohort_shape)
    conv = {"read": [], "convert": []}
    for _ in range(repeats):
        for what in ("read", "convert"):
            progress(f"conversion: {what}")
            conv[what].append(run_child("convert", cohort=str(cohort), workers=2, what=what))
    progress("evaluator")
    ev = run_child("evaluate", slices=eval_n, baseline_slices=eval_base)
    idle = run_child("idle")["peak_rss_mib"]

    rows = table_rows(infer, train, conv, ev, cohort_shape)

    def fmt(v):
        return f"{v:.4f}" if v < 1 else f"{v:.3g}" if v < 100 else f"{v:.0f}"

    table = [
        "| figure | ours | value | baseline | value | ratio ours / baseline |",
        "|---|---|---:|---|---:|---:|",
    ]
    table += [
        f"| {f} | {o} | {fmt(ov)} | {b} | {fmt(bv)} | {ratio} |" for f, o, ov, b, bv, ratio in rows
    ]
    cmd = (
        "python benchmarks/perf_table.py"
        + (" --quick" if q else "")
        + (f" --write {args.write}" if args.write else "")
    )
    text = "\n".join(
        [
            BEGIN,
            "",
            f"Command: `{cmd}` ({time.time() - t_start:.0f} s, {time.strftime('%Y-%m-%d')})",
            "",
            f"Machine: {machine()}.",
            "",
            f"Repetitions: inference {n_infer['paper']} (paper scale) / {n_infer['cpu']} "
            f"(CPU twin) slices per child, training {n_train['paper']} / {n_train['cpu']} "
            "iterations per child after 1 warm-up, "
            f"{repeats} child(ren) per row alternating B, E; times are medians, DCRF share is DCRF "
            f"seconds / row E seconds. Detections per slice B / E at paper scale, 50: "
            f"{statistics.median(infer['paper', 50]['B']['instances']):.0f} / "
            f"{statistics.median(infer['paper', 50]['E']['instances']):.0f}; "
            f"conversion: {conv['convert'][0]['slices']} lesion slices written; "
            f"evaluator: {eval_n} slices (baseline {eval_base}). "
            "Peak RSS is the whole child process: one that only imports torch, "
            f"detectron2 and rsrcnn_d2 peaks at {idle:.0f} MiB, which every RSS figure includes.",
            "",
            *table,
            "",
            END,
        ]
    )
    print(text)
    if args.write:
        from rsrcnn_d2.data.fileio import atomic_write_bytes

        path = Path(args.write)
        old = path.read_text() if path.exists() else ""
        if BEGIN in old and END in old:
            new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
        else:
            new = old.rstrip("\n") + "\n\n## Performance table\n\n" + text + "\n"
        atomic_write_bytes(path, new.encode())
        print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
