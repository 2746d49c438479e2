"""Table 1's ablation rows and a k sweep on the synthetic cohort, several seeds, resumable.

    python tools/run_ablation.py [--output output/ablation] [--seeds 0 1 2] [--iters 1000]
                                 [--rows A B C D E] [--k 1.0 1.3 2.0] [--subjects 30]
                                 [--variant NAME ROW KEY VALUE [KEY VALUE ...]]

Every run is the ordinary training program (tools/train_net.py, run as
``python -m rsrcnn_d2.engine.train_net``) with a CPU-sized config
(configs/PWML-Tiny/), trained on the cohort's train subjects for a fixed number
of iterations and evaluated once on its held-out test subjects (strict protocol).
The cohort (tools/make_synthetic_cohort.py + tools/prepare_pwml.py) is made once
and shared by all runs; seeds change initialisation and data order only.

Re-running skips finished runs and resumes an interrupted one from its last
checkpoint; runs go seed by seed, so a partial sweep still has whole seeds.
The summary (mean ± sd over seeds) is written to OUTPUT/summary.md (--summary).
Row A is the classical baseline (rsrcnn_d2.classical, no training): per seed,
its parameters are tuned on the validation subjects (the seed is the
optimiser's) and it is evaluated once on the test subjects, like the tuned CRF.
Row E also gets a tuned-CRF twin (E_dcrf_tuned, unless --no-tune-dcrf): the
seed's row-E model with the CRF parameters tuned on the validation subjects by
tools/tune_dcrf.py, as the paper does, then evaluated once on the test subjects.
--variant adds a run of your own: a row with config overrides, e.g.
``--variant C_relu_off C MODEL.HRPN.OBJECTNESS_RELU False``.
The program behind ``tools/run_ablation.py`` (also ``python -m rsrcnn_d2.experiments.ablation``).
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .. import model_zoo
from ..data.fileio import atomic_write_bytes, atomic_write_json
from .results import REFERENCE_METRICS, pooled_results, seed_summary_table
from .runner import (
    COHORT_MODULE,
    PREPARE_MODULE,
    TRAIN_NET_MODULE,
    TUNE_MODULE,
    finished_result,
    run_tool,
    train_and_record,
    trained_weights,
)

__all__ = [
    "ROW_CONFIGS",
    "ROW_LABELS",
    "planned_runs",
    "add_variants",
    "classical_run",
    "tuned_dcrf_run",
    "prepare_cohort",
    "write_summary",
    "main",
]

ROW_CONFIGS = {row: model_zoo.row_config(row) for row in model_zoo.ROW_CONFIGS["tiny"]}
ROW_LABELS = {
    "A": "A  classical (local contrast, tuned on val)",
    "B": "B  Mask R-CNN",
    "C": "C  + H-RPN, k=1.3",
    "D": "D  + LRS-Net",
    "E": "E  + DCRF (RS R-CNN), k=1.3",
}
ROW_E_K = 1.3  # the expansion factor of the row E config


def planned_runs(rows, ks):
    """{name: (config, extra opts, label)}: the rows, then row E at each other k."""
    runs = {row: (ROW_CONFIGS.get(row), [], ROW_LABELS[row]) for row in rows}  # A: no config
    for k in ks:
        if abs(k - ROW_E_K) < 1e-9:
            if "E" not in runs:
                runs["E"] = (ROW_CONFIGS["E"], [], ROW_LABELS["E"])
            continue
        text = repr(float(k))  # "2.0": the config key is a float
        runs[f"E_k{text}"] = (
            ROW_CONFIGS["E"],
            ["MODEL.ROI_MASK_HEAD.EXPANSION_K", text],
            f"E  k={text}",
        )
    return runs


def add_variants(runs, variants):
    """Add --variant runs (NAME ROW KEY VALUE ...) to the plan."""
    for v in variants:
        if len(v) < 2 or v[1] not in ROW_CONFIGS or len(v) % 2:
            raise SystemExit(
                f"error: --variant wants NAME ROW [KEY VALUE ...] with ROW in "
                f"{sorted(ROW_CONFIGS)}: {' '.join(v)!r}"
            )
        name, row, opts = v[0], v[1], v[2:]
        if name in runs or "/" in name:
            raise SystemExit(f"error: --variant name {name!r} is taken or not a folder name")
        pairs = " ".join(f"{k}={val}" for k, val in zip(opts[::2], opts[1::2]))
        runs[name] = (ROW_CONFIGS[row], list(opts), f"{row}  {pairs}".rstrip())
    return runs


TUNED = "E_dcrf_tuned"
CLASSICAL = "A"


def classical_run(out: Path, seed: int, init_points: int = 10, n_iter: int = 30) -> None:
    """Row A for one seed: tune the classical detector on pwml_val, evaluate on pwml_test,
    record."""
    from ..classical import run_row_a
    from ..data import register_pwml_root

    register_pwml_root(out / "pwml")  # this process's pwml_* are the cohort's, as the tools' env
    run_row_a(
        "pwml_val",
        "pwml_test",
        out / "runs" / CLASSICAL / f"seed{seed}",
        seed=seed,
        init_points=init_points,
        n_iter=n_iter,
        progress=False,
    )


def tuned_dcrf_run(out: Path, seed: int, env) -> None:
    """Tune row E's CRF on pwml_val for one seed's model, evaluate on pwml_test, record."""
    source, run_dir = out / "runs" / "E" / f"seed{seed}", out / "runs" / TUNED / f"seed{seed}"
    if finished_result(run_dir) is not None or finished_result(source) is None:
        return
    weights, tuned = trained_weights(source), run_dir / "dcrf_tuned.yaml"
    run_tool(
        [
            "-m",
            TUNE_MODULE,
            "--config-file",
            ROW_CONFIGS["E"],
            "--weights",
            weights,
            "--dataset",
            "pwml_val",
            "--output",
            tuned,
            "--cache",
            run_dir / "val_probs.pt",
            "--init-points",
            5,
            "--n-iter",
            15,
            "--seed",
            seed,
        ],
        env,
    )
    run_tool(
        [
            "-m",
            TRAIN_NET_MODULE,
            "--eval-only",
            "--config-file",
            tuned,
            "MODEL.WEIGHTS",
            weights,
            "DATASETS.TEST",
            "('pwml_test',)",
            "OUTPUT_DIR",
            run_dir,
        ],
        env,
    )
    # the evaluator's figures, recomputed from its per-slice CSV (eval-only keeps no metrics.json)
    results = pooled_results([run_dir / "inference" / "pwml_test" / "pwml_slices.csv"])
    atomic_write_json(
        run_dir / "result.json", {"config": str(tuned), "opts": [], "results": results}
    )


def prepare_cohort(out: Path, args, env):
    raw, pwml = out / "raw", out / "pwml"
    # the anatomy-based cohort, every subject with lesions (the converter's lesion-slice mode,
    # the paper's, refuses lesion-free subjects)
    run_tool(
        [
            "-m",
            COHORT_MODULE,
            raw,
            "--subjects",
            args.subjects,
            "--seed",
            args.cohort_seed,
            "--lesion-free-fraction",
            0,
            "--workers",
            2,
        ],
        env,
    )
    if not (pwml / "conversion.json").exists():
        run_tool(["-m", PREPARE_MODULE, raw, "--output", pwml, "--seed", args.cohort_seed], env)


def write_summary(out: Path, runs, seeds, iters, filename: str = "summary.md") -> str:
    results, per_seed = {}, []
    for name, (config, opts, label) in runs.items():
        done = [finished_result(out / "runs" / name / f"seed{s}") for s in seeds]
        results[name] = [d["results"] for d in done if d is not None]
        for s, d in zip(seeds, done):
            if d is not None:
                r = d["results"]
                per_seed.append(
                    f"| {label} | {s} | {r['pwml_strict/Dice']:.3f} | "
                    f"{r['pwml_strict/Sens']:.3f} | {r['pwml_strict/lesion_F1']:.3f} | "
                    f"{int(r['pwml_strict/n_slices'])} |"
                )
    labels = {name: label for name, (_, _, label) in runs.items()}
    text = "\n".join(
        [
            "Synthetic cohort, held-out test subjects, strict protocol; "
            f"{iters} iterations per run; "
            f"mean ± sd over seeds {', '.join(map(str, seeds))}.",
            "",
            seed_summary_table(results, labels, count_title="seeds"),
            "",
            "The reference implementation's protocol (the paper's Table 1): "
            "slices whose prediction is empty are skipped, the rest averaged per subject, "
            "then over subjects:",
            "",
            seed_summary_table(results, labels, REFERENCE_METRICS, count_title="seeds"),
            "",
            "Per seed:",
            "",
            "| run | seed | Dice | Sensitivity | lesion F1 | slices |",
            "|---|---|---|---|---|---|",
            *per_seed,
            "",
        ]
    )
    atomic_write_bytes(out / filename, text.encode())
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--output", default="output/ablation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument(
        "--rows", nargs="+", default=[CLASSICAL, *ROW_CONFIGS], choices=[CLASSICAL, *ROW_CONFIGS]
    )
    p.add_argument(
        "--k",
        type=float,
        nargs="*",
        default=[1.0, 1.3, 2.0],
        help="expansion factors for row E (1.3 is row E itself)",
    )
    p.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME ROW KEY VALUE",
        help="an extra run: a row with overrides",
    )
    p.add_argument("--subjects", type=int, default=30, help="synthetic cohort size")
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument("--no-tune-dcrf", action="store_true", help="no tuned-CRF twin of row E")
    p.add_argument("--summary-only", action="store_true", help="only tabulate finished runs")
    p.add_argument("--summary", default="summary.md", help="summary file name inside OUTPUT")
    args = p.parse_args(argv)

    out = Path(args.output).absolute()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DETECTRON2_DATASETS=str(out))  # registers OUT/pwml as pwml_*
    runs = add_variants(planned_runs(args.rows, args.k), args.variant)
    tune = "E" in runs and not args.no_tune_dcrf
    if tune:
        runs[TUNED] = (ROW_CONFIGS["E"], [], "E  + DCRF tuned on val (tools/tune_dcrf.py)")
    if not args.summary_only:
        prepare_cohort(out, args, env)
        failed = []
        todo = [(s, name) for s in args.seeds for name in runs if name != TUNED]
        for i, (seed, name) in enumerate(todo, 1):
            config, opts, label = runs[name]
            run_dir = out / "runs" / name / f"seed{seed}"
            state = (
                "done"
                if finished_result(run_dir)
                else "tuning"
                if name == CLASSICAL
                else "training"
            )
            print(
                f"\n=== run {i}/{len(todo)}: {label}, seed {seed} ({state}) -> {run_dir}",
                flush=True,
            )
            try:
                if name == CLASSICAL:
                    classical_run(out, seed)
                else:
                    train_and_record(
                        config,
                        run_dir,
                        [
                            *opts,
                            "SOLVER.MAX_ITER",
                            args.iters,
                            "SOLVER.CHECKPOINT_PERIOD",
                            max(1, args.iters // 4),
                            "SEED",
                            seed,
                            "DATASETS.TEST",
                            "('pwml_test',)",
                        ],
                        env=env,
                    )
                if name == "E" and tune:
                    tuned_dcrf_run(out, seed, env)
            except (RuntimeError, ValueError, subprocess.CalledProcessError) as e:
                # go on with the other runs; re-running retries this one
                print(f"error: {e}", file=sys.stderr, flush=True)
                failed.append(f"{label}, seed {seed}")
            write_summary(out, runs, args.seeds, args.iters, args.summary)
    print(write_summary(out, runs, args.seeds, args.iters, args.summary))
    print(f"summary: {out / args.summary}")
    if not args.summary_only and failed:
        print("failed (re-run to retry): " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
