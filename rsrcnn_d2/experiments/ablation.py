"""Table 1's ablation rows, the k sweep on row C and our row, several seeds, resumable.

`run_ablation` trains every run through the training program (``python -m
rsrcnn_d2.cli.train_net``, `runner.train_and_record`) with a CPU-sized config
(configs/PWML-Tiny/) on one synthetic cohort (`prepare_cohort`), evaluates it once on the
test subjects at the config's operating point, calibrates it on the validation subjects
(`calibrated_run`) and evaluates it again at its calibrated point; rows that train exactly
as another (`TRAINED_AS`) and test-time variants (`TEST_VARIANTS`) reuse its weights; row A
(`classical_run`) is tuned instead of trained. `write_summary` tabulates mean ± sd over seeds,
both protocols, bootstrap intervals of the differences (`DIFFERENCES`) and, with the k
sweep, row C's k chosen on the validation subjects (`k_choice`).
The program, its options and its outputs: `rsrcnn_d2.cli.run_ablation` (tools/run_ablation.py,
``rsrcnn-ablation``).
"""

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from .. import model_zoo
from ..data.fileio import atomic_write_bytes, atomic_write_json, read_json
from .cohort import anatomy_cohort
from .intervals import CALIBRATED, interval_table, lesion_load_table, versus_table
from .k_choice import k_choice_table
from .results import (
    LESION3D_METRICS,
    REFERENCE_METRICS,
    SIZE_METRICS,
    SUMMARY_METRICS,
    heads_start,
    loss_trend,
    mean_sd,
    seed_summary_table,
)
from .run_health import HEALTH_NOTE, health_cell, health_line, read_health
from .run_options import (
    StaleRunError,
    asked_options,
    check_run_dir,
    option_differences,
    recorded_options,
    set_aside,
)
from .runner import (
    DatasetRoot,
    calibrate,
    evaluate_checkpoint,
    finished_result,
    train_and_record,
    trained_weights,
)

__all__ = [
    "ROW_CONFIGS",
    "ROW_LABELS",
    "planned_runs",
    "add_variants",
    "classical_run",
    "calibrated_run",
    "prepare_cohort",
    "cohort_grid",
    "write_summary",
    "run_ablation",
]

ROW_CONFIGS = {row: model_zoo.row_config(row) for row in model_zoo.ROW_CONFIGS["tiny"]}
ROW_LABELS = {
    "A": "A  classical (local contrast, tuned on val)",
    "B": "B  Mask R-CNN",
    "C": "C  + H-RPN, k=1.3",
    "D": "D  + LRS-Net",
    "E": "E  + DCRF (RS R-CNN), k=1.3",
    "plus": "RS R-CNN+ (E + 2.5-D + flip TTA)",
}
K_ROW, ROW_K = "C", 1.3  # the k sweep varies row C (the paper's Table 2); its config has 1.3
# short names for the figures' axes
FIGURE_LABELS = {"B": "B Mask R-CNN", "E": "E RS R-CNN", "plus": "RS R-CNN+"}
FIGURE_LABELS.update({f"{K_ROW}_k{k}": f"{K_ROW} k={k}" for k in ("1.0", "2.0")})
# rows that train exactly as another row (the CRF acts at test time only; same seed, same
# weights: checked on seed 0, every tensor equal): they evaluate that row's trained weights
TRAINED_AS = {"E": "D"}
# test-time variants: {name: (row whose trained weights they use, opts, label)}; calibrated only
TEST_VARIANTS = {"E_tta": ("E", ["TEST.FLIP_TTA", "True"], "E + flip TTA (E's weights)")}
CLASSICAL = "A"
BASELINE = "B"  # what every row is compared with (the paper's Mask R-CNN)
# a calibrated record without it was evaluated before the lesion-size strata: evaluated again
SIZE_KEY = SIZE_METRICS[0][1]
# --final-weights: run <name>_final calibrates and evaluates <name>'s model_final.pth, beside the
# kept checkpoint (model_best.pth, the reference's lowest validation loss)
FINAL = "_final"
# what a calibration can maximise on the validation subjects (tuning.dcrf_search.OBJECTIVES)
OBJECTIVE_NAMES = {"dice": "strict Dice", "lesion_f1": "lesion F1"}


def calibration_folder(objective: str = "dice") -> str:
    """A run's calibrated evaluation, one folder per objective (runs/<run>/seed<s>/<folder>):
    a re-run with another ``--objective`` adds its own instead of reusing the first's."""
    if objective not in OBJECTIVE_NAMES:
        known = tuple(OBJECTIVE_NAMES)
        raise ValueError(f"unknown calibration objective {objective!r} (one of {known})")
    return CALIBRATED if objective == "dice" else f"{CALIBRATED}_{objective}"


def summary_file(objective: str = "dice") -> str:
    """The summary's default name in OUT, one per objective, as the calibrated folders."""
    return "summary.md" if objective == "dice" else f"summary_{objective}.md"


# the differences the summary gives intervals for: (minuend, subtrahend)
DIFFERENCES = (
    ("E", "B"),
    ("plus", "E"),
    ("plus", "B"),
    ("C", "B"),  # H-RPN with k = 1.3
    ("D", "C"),  # LRS-Net
    ("E", "D"),  # the CRF
    (K_ROW, f"{K_ROW}_k1.0"),  # the expansion k = 1.3 against none (Table 2)
    (K_ROW, f"{K_ROW}_k2.0"),
    ("E_tta", "E"),
    ("plus", "E_tta"),
)


def final_variants(runs, test_variants) -> dict:
    """{<name>_final: (config, opts, label)} for every trained run of the plan: its final
    weights, evaluated beside the checkpoint the reference's rule keeps."""
    return {
        f"{name}{FINAL}": (config, opts, f"{label}, final weights")
        for name, (config, opts, label) in runs.items()
        if name != CLASSICAL and name not in test_variants
    }


def planned_runs(rows, ks):
    """{name: (config, extra opts, label)}: the rows, then row C at each other k."""
    runs = {row: (ROW_CONFIGS.get(row), [], ROW_LABELS[row]) for row in rows}  # A: no config
    for k in ks:
        if abs(k - ROW_K) < 1e-9:
            if K_ROW not in runs:
                runs[K_ROW] = (ROW_CONFIGS[K_ROW], [], ROW_LABELS[K_ROW])
            continue
        text = repr(float(k))  # "2.0": the config key is a float
        runs[f"{K_ROW}_k{text}"] = (
            ROW_CONFIGS[K_ROW],
            ["MODEL.ROI_MASK_HEAD.EXPANSION_K", text],
            f"{K_ROW}  k={text}",
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


def classical_run(out: Path, seed: int, init_points: int = 10, n_iter: int = 30) -> None:
    """Row A for one seed: tune the classical detector on pwml_val, evaluate on pwml_test,
    record."""
    from .row_a import run_row_a

    cohort_root(out).register(replace=True)  # this process's pwml_* are the cohort's
    run_row_a(
        "pwml_val",
        "pwml_test",
        out / "runs" / CLASSICAL / f"seed{seed}",
        seed=seed,
        init_points=init_points,
        n_iter=n_iter,
        progress=False,
    )


def evaluate_trained_as(
    out: Path, name: str, source: str, config, opts, seed: int, retrain: bool = False
):
    """Give run ``name`` the weights ``source`` trained for this seed (hard links) and evaluate
    them with ``name``'s config on pwml_test; its record (with ``weights_of``), or None while
    ``source`` has not finished. A record made from weights ``source`` has been trained again
    since is refused (`StaleRunError`), or with ``retrain`` moved aside and made again."""
    run_dir, from_dir = out / "runs" / name / f"seed{seed}", out / "runs" / source / f"seed{seed}"
    done = finished_result(run_dir)
    source_options = recorded_options(from_dir)
    made_from = (done or {}).get("source_options")
    if made_from is not None and option_differences(made_from, source_options or {}):
        if not retrain:
            raise StaleRunError(
                run_dir, f"evaluated the weights of {from_dir}, trained again since (--retrain)"
            )
        set_aside(run_dir)
        done = None
    if done is not None or finished_result(from_dir) is None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    for file in ("model_best.pth", "model_final.pth", "metrics.json", "health.json"):
        if (from_dir / file).exists() and not (run_dir / file).exists():
            os.link(from_dir / file, run_dir / file)
    results = evaluate_checkpoint(config, trained_weights(run_dir), run_dir, opts)
    record = {"config": str(config), "opts": list(map(str, opts)), "weights_of": source}
    record["source_options"] = source_options  # what the weights were trained with
    record["results"], record["health"] = results, read_health(run_dir)
    atomic_write_json(run_dir / "result.json", record)
    return record


def calibrated_run(
    out: Path,
    name: str,
    config,
    opts,
    seed: int,
    objective: str = "dice",
    init_points: int = 5,
    n_iter: int = 15,
    weights_of: str = None,
    final: bool = False,
):
    """Calibrate a finished run on pwml_val, evaluate it on pwml_test there, record; the record.

    ``weights_of``: another run whose trained weights this one evaluates with its own
    ``opts`` (a test-time variant, e.g. flip TTA, needs no training of its own);
    ``final``: its ``model_final.pth`` rather than the checkpoint training kept.
    None while the run has not finished training.
    """
    source = out / "runs" / (weights_of or name) / f"seed{seed}"
    run_dir = out / "runs" / name / f"seed{seed}" / calibration_folder(objective)
    weights = source / "model_final.pth" if final else trained_weights(source)
    done = finished_result(run_dir)
    if done is not None and weights_of and _older_than_source(run_dir, source):
        set_aside(run_dir.parent)  # the source was trained again (--retrain) since: redo
        done = None
    if done is not None and SIZE_KEY not in done["results"]:  # evaluated before the strata
        done["results"] = evaluate_checkpoint(done["config"], weights, run_dir, opts)
        atomic_write_json(run_dir / "result.json", done)
    if done is not None or finished_result(source) is None:
        return done
    point = run_dir / "operating_point.yaml"
    tuned = calibrate(
        config,
        weights,
        point,
        "pwml_val",
        opts,
        seed=seed,
        trials=(init_points, n_iter),
        objective=objective,
        # the network's validation outputs do not depend on the objective: one cache per run
        cache=run_dir.parent / CALIBRATED / "val_probs.pt",
    )
    record = {  # nothing to calibrate (no point beat an empty prediction): the config's point
        "config": str(tuned or config),
        "opts": list(map(str, opts)),
        "weights": str(weights),
        "operating_point": read_json(point.with_suffix(".json"))["best"],  # null: not calibrated
        "results": evaluate_checkpoint(tuned or config, weights, run_dir, opts),
    }
    atomic_write_json(run_dir / "result.json", record)
    return record


def _older_than_source(run_dir: Path, source: Path) -> bool:
    """Whether a record made from another run's weights predates that run's own record."""
    mine, theirs = run_dir / "result.json", source / "result.json"
    return theirs.is_file() and theirs.stat().st_mtime_ns > mine.stat().st_mtime_ns


def cohort_root(out: Path) -> DatasetRoot:
    """The sweep's cohort, OUT/pwml, registered as pwml_* (the rows' configs name those)."""
    return DatasetRoot("pwml", out / "pwml")


def prepare_cohort(
    out: Path,
    subjects: int,
    cohort_seed: int,
    fractions: Sequence[float],
    params: Optional[Mapping] = None,
) -> None:
    """The anatomy-based cohort in OUT/raw (``params``: `AnatomyParams` fields beyond the
    defaults), converted into OUT/pwml once and registered as pwml_* (`anatomy_cohort`)."""
    anatomy_cohort(
        out / "raw", cohort_root(out).folder, subjects, cohort_seed, params, fractions=fractions
    )


def cohort_grid(out: Path) -> str:
    """The voxel grid OUT/raw's cohort was simulated on, from its recorded settings ("" when
    there is no record)."""
    record = out / "raw" / "dataset.json"
    if not record.is_file():
        return ""
    params = read_json(record).get("generator_settings", {}).get("params", {})
    if "in_plane_mm" not in params or "slice_mm" not in params:
        return ""
    (a, b), (c, d) = params["in_plane_mm"], params["slice_mm"]
    return f"voxels {a:g}-{b:g} mm in-plane, slices {c:g}-{d:g} mm"


def _per_seed_lines(out: Path, runs, seeds, folder: str = CALIBRATED):
    lines = []
    for name, (_, _, label) in runs.items():
        for s in seeds:
            plain = finished_result(out / "runs" / name / f"seed{s}")
            tuned = finished_result(out / "runs" / name / f"seed{s}" / folder)
            if plain is None and tuned is None:
                continue
            r = plain["results"] if plain else {}
            cells = [
                f"{r.get('pwml_strict/Dice', float('nan')):.3f}",
                f"{r.get('pwml_strict/lesion_F1', float('nan')):.3f}",
            ]
            if tuned is not None:
                t, point = tuned["results"], tuned["operating_point"]
                if point is None:  # no point beat an empty prediction: the config's own
                    where = "not calibrated (nothing found)"
                else:
                    crf = (
                        f", l1={point['l1']:.3g} l2={point['l2']:.3g} c1={point['c1']:.3g} "
                        f"e1={point['e1']}"
                        if "l1" in point
                        else ""
                    )
                    where = f"score≥{point['score']:.3g}{crf}"
                cells += [
                    where,
                    f"{t['pwml_strict/Dice']:.3f}",
                    f"{t['pwml_strict/lesion_F1']:.3f}",
                    f"{t.get('pwml_lesion3d/F1', float('nan')):.3f}",
                ]
            else:
                cells += ["–"] * 4
            cells.append(health_cell(read_health(out / "runs" / name / f"seed{s}")))
            lines.append(f"| {label} | {s} | " + " | ".join(cells) + " |")
    return lines


def _budget_lines(out: Path, runs, seeds, iters):
    """How far from flat the training losses ended (mean over seeds)."""
    lines = [
        f"Training budget: {iters} iterations of 2 slices per run. How flat the losses "
        "ended: mean over the last fifth of the iterations against the fifth before "
        "(change: relative; near 0 is flat), and the iteration at which the box head first "
        "had a foreground ROI (before it, the heads learn nothing), mean over seeds:",
        "",
        "| run | heads start | total loss, 4th fifth | last fifth | change | mask loss change |",
        "|---|---|---|---|---|---|",
    ]
    for name, (_, _, label) in runs.items():
        dirs = [out / "runs" / name / f"seed{s}" for s in seeds]
        files = [d / "metrics.json" for d in dirs if finished_result(d) is not None]
        if name == CLASSICAL or not files:
            continue
        total = [loss_trend(f) for f in files]
        mask = [loss_trend(f, "loss_mask") for f in files]
        cells = [mean_sd([t[k] for t in total])[0] for k in ("before", "last", "change")]
        cells.append(mean_sd([m["change"] for m in mask])[0])
        start = mean_sd([_heads_start(f.parent) for f in files])[0]
        lines.append(
            f"| {label} | {start:.0f} | {cells[0]:.3f} | {cells[1]:.3f} | {cells[2]:+.2f} | "
            f"{cells[3]:+.2f} |"
        )
    return lines


def _heads_start(run_dir: Path) -> float:
    """The heads' first foreground iteration: health.json's, else read off metrics.json."""
    health = read_health(run_dir)
    if health is None:
        return heads_start(run_dir / "metrics.json")
    first = health["first_foreground_iteration"]
    return float("nan") if first is None else float(first)


def _health_lines(out: Path, runs, seeds):
    """Training health of every trained run (E: D's training), failed ones named."""
    healths = {
        f"{name} seed {s}": read_health(out / "runs" / name / f"seed{s}")
        for name, (config, _, _) in runs.items()
        for s in seeds
        if config is not None and finished_result(out / "runs" / name / f"seed{s}") is not None
    }
    return [health_line(healths)] if healths else []


def write_summary(
    out: Path,
    runs,
    seeds,
    iters,
    filename: str = "summary.md",
    pretrained=None,
    objective: str = "dice",
) -> str:
    """OUT/<filename> (+ .json): every table of the finished runs, "calibrated" meaning
    calibrated for ``objective``; the text."""
    start = pretrained or "each config's own weights (cold start)"
    folder = calibration_folder(objective)
    plain, tuned = {}, {}
    for name in runs:
        dirs = [out / "runs" / name / f"seed{s}" for s in seeds]
        plain[name] = [d["results"] for d in map(finished_result, dirs) if d is not None]
        tuned[name] = [
            d["results"] for d in (finished_result(x / folder) for x in dirs) if d is not None
        ]
    labels = {name: label for name, (_, _, label) in runs.items()}
    trained = {n: v for n, v in tuned.items() if n != CLASSICAL}
    intervals, numbers = interval_table(out, runs, seeds, DIFFERENCES, labels, folder=folder)
    k_text, numbers["k_chosen_on_validation"] = k_choice_table(
        out, runs, seeds, K_ROW, ROW_K, folder, OBJECTIVE_NAMES[objective]
    )
    kept = {n: v for n, v in runs.items() if not n.endswith(FINAL)}
    versus, numbers["versus_" + BASELINE] = versus_table(
        out, kept, seeds, BASELINE, labels, folder=folder
    )
    finals = {n: v for n, v in runs.items() if n.endswith(FINAL)}
    if BASELINE + FINAL in finals:
        text, numbers["versus_" + BASELINE + FINAL] = versus_table(
            out, finals, seeds, BASELINE + FINAL, labels, folder=folder
        )
        versus += (
            "\n\nThe same with every run's final weights (no checkpoint selection):\n\n" + text
        )
    text = "\n".join(
        [
            f"Anatomy-based cohort ({out / 'pwml'}; {cohort_grid(out) or 'grid not recorded'}), "
            f"held-out test subjects; {iters} iterations "
            f"per run, starting from {start}; "
            f"mean ± sd over seeds {', '.join(map(str, seeds))}.",
            "",
            *_health_lines(out, runs, seeds),
            "",
            versus,
            "",
            "**Calibrated** (score threshold, and the CRF where the row has one, tuned on the "
            f"validation subjects for {OBJECTIVE_NAMES[objective]}), strict protocol:",
            "",
            seed_summary_table(trained, labels, SUMMARY_METRICS, count_title="seeds"),
            "",
            "Calibrated, lesion-wise with lesions as 3-D components of each subject's "
            "stacked test slices:",
            "",
            seed_summary_table(trained, labels, LESION3D_METRICS, count_title="seeds"),
            "",
            "Calibrated, lesion-wise by the size of each 2-D lesion (pixels at the slice's own "
            "size): the share of true lesions found, their mean lesion Dice (a missed lesion "
            "scores 0) and the F1 with the false-positive components of that size:",
            "",
            seed_summary_table(trained, labels, SIZE_METRICS, count_title="seeds"),
            "",
            "Calibrated, the reference implementation's protocol (the paper's Table 1): "
            "slices whose prediction is empty are skipped, the rest averaged per subject, "
            "then over subjects:",
            "",
            seed_summary_table(trained, labels, REFERENCE_METRICS, count_title="seeds"),
            "",
            "At the configs' own operating point (score threshold 0.7, the reference's CRF "
            "parameters), strict protocol:",
            "",
            seed_summary_table(plain, labels, count_title="seeds"),
            "",
            intervals,
            "",
            *([k_text, ""] if k_text else []),
            lesion_load_table(out, runs, seeds, labels, folder=folder),
            "",
            *_budget_lines(out, runs, seeds, iters),
            "",
            "Per seed (strict protocol; config's point, then calibrated):",
            "",
            "| run | seed | Dice | lesion F1 | calibrated point | Dice | lesion F1 (2-D) | "
            "lesion F1 (3-D) | health |",
            "|---|---|---|---|---|---|---|---|---|",
            *_per_seed_lines(out, runs, seeds, folder),
            "",
            HEALTH_NOTE + ".",
            "",
        ]
    )
    atomic_write_bytes(out / filename, text.encode())
    atomic_write_json(
        (out / filename).with_suffix(".json"),
        {
            "seeds": list(seeds),
            "iters": iters,
            "objective": objective,
            "config_point": plain,
            "calibrated": tuned,
            **numbers,
        },
    )
    return text


def write_figures(out: Path, runs, seed: int, objective: str = "dice") -> None:
    """OUT/figures/boxplots.png and overlays.png from the runs of one seed calibrated for
    ``objective``."""
    from .figures import comparison_figures
    from .intervals import slice_csv

    cohort_root(out).register(replace=True)  # this process's pwml_* are the cohort's
    rows = {}
    folder = calibration_folder(objective)
    for name, (_, opts, _) in runs.items():
        tuned = finished_result(out / "runs" / name / f"seed{seed}" / folder)
        trained = finished_result(out / "runs" / name / f"seed{seed}")
        if name == CLASSICAL or tuned is None or trained is None:  # test variants: no weights
            continue
        weights = trained_weights(out / "runs" / name / f"seed{seed}")
        short = FIGURE_LABELS.get(name, name)
        rows[short] = (tuned["config"], opts, weights, slice_csv(out, name, seed, folder))
    shown = [FIGURE_LABELS[n] for n in ("B", "E", "plus") if FIGURE_LABELS[n] in rows]
    for name, path in comparison_figures(
        "pwml_test", rows, out / "figures", overlay_labels=shown
    ).items():
        print(f"{name}: {path}")


def _train_opts(opts, iters: int, seed: int, pretrained=None) -> list:
    """A run's overrides: its row's, the budget, the seed, the starting weights (a `pretrain`
    checkpoint, or the config's), the test split."""
    checkpoints = max(1, iters // 4)
    budget = ["SOLVER.MAX_ITER", iters, "SOLVER.CHECKPOINT_PERIOD", checkpoints]
    start = ["MODEL.WEIGHTS", str(pretrained)] if pretrained else []
    return [*opts, *budget, "SEED", seed, *start, "DATASETS.TEST", "('pwml_test',)"]


def check_pretrained(pretrained, cohort_seed: int) -> None:
    """Refuse a pre-trained checkpoint whose source cohort is the evaluation cohort itself
    (the same generator and seed: the test subjects would have been seen)."""
    from .pretrain import pretrained_source

    source = pretrained_source(pretrained) or {}
    made = source.get("generator_settings") or {}
    if made.get("seed") == int(cohort_seed):
        raise ValueError(
            f"{pretrained}: pre-trained on generator seed {cohort_seed}, the evaluation "
            "cohort's own: its test subjects were seen; pre-train with another seed"
        )


def run_ablation(
    out,
    *,
    seeds: Sequence[int],
    iters: int,
    rows: Sequence[str],
    ks: Sequence[float],
    variants: Sequence[Sequence[str]],
    subjects: int,
    cohort_seed: int,
    fractions: Sequence[float],
    objective: str,
    calibration_trials: Sequence[int],
    no_calibrate: bool = False,
    no_train: bool = False,
    summary_only: bool = False,
    retrain: bool = False,
    figures: bool = False,
    summary: str = "summary.md",
    pretrained=None,
    final_weights: bool = False,
    cohort_params: Optional[Mapping] = None,
) -> list[str]:
    """The sweep into ``out`` (the module doc): make the cohort, train, calibrate and evaluate
    every planned run of every seed, resumably, then tabulate (``out/summary``); the labels of
    the runs that failed (re-running retries them), the others done.

    ``variants``: extra runs as NAME ROW [KEY VALUE ...]; ``calibration_trials``: (random,
    guided) Bayesian trials of the joint threshold + CRF search; ``no_calibrate``: train only;
    ``no_train``: calibrate finished runs only; ``summary_only``: tabulate finished runs;
    ``figures``: also OUT/figures (seed ``seeds[0]``); ``pretrained``: every trained run
    starts from this checkpoint (`rsrcnn_d2.experiments.pretrain`; the paper's protocol)
    instead of the config's weights; ``final_weights``: every trained run's final weights are
    also calibrated and evaluated (``<run>_final``, `final_variants`); ``cohort_params``:
    `AnatomyParams` fields of the cohort beyond the defaults (`COARSE_GRID` for a smoke run;
    the cohort's folder refuses other settings than it was made with). A run trained with
    other options is refused
    (`StaleRunError`, before any work) unless ``retrain``.
    """
    if pretrained:
        pretrained = Path(pretrained).absolute()
        check_pretrained(pretrained, cohort_seed)

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    roots = [cohort_root(out)]  # OUT/pwml as pwml_*, here and in every training child
    runs = add_variants(planned_runs(rows, ks), variants)
    test_variants = {n: v for n, v in TEST_VARIANTS.items() if v[0] in runs}
    for name, (row, opts, label) in test_variants.items():
        runs[name] = (runs[row][0], opts, label)
    finals = final_variants(runs, test_variants) if final_weights else {}
    runs.update(finals)  # tabulated; calibrated and evaluated with their source run
    failed = []
    if not summary_only:
        derived = {**test_variants, **finals}  # no training or run of their own
        todo = [(s, name) for s in seeds for name in runs if name not in derived]
        if not retrain:  # every run trained with other options refused before any work
            for seed, name in todo:
                config, opts, label = runs[name]
                if name != CLASSICAL:
                    check_run_dir(
                        out / "runs" / name / f"seed{seed}",
                        asked_options(config, _train_opts(opts, iters, seed, pretrained), roots),
                        f"{label}, seed {seed}",
                    )
        if no_train:  # calibrate only: on the cohort the runs were trained on
            cohort_root(out).register(replace=True)
        else:
            prepare_cohort(out, subjects, cohort_seed, fractions, cohort_params)
        for i, (seed, name) in enumerate(todo, 1):
            config, opts, label = runs[name]
            run_dir = out / "runs" / name / f"seed{seed}"
            if no_train and (name == CLASSICAL or finished_result(run_dir) is None):
                continue
            state = "done" if finished_result(run_dir) else "running"
            print(
                f"\n=== run {i}/{len(todo)}: {label}, seed {seed} ({state}) -> {run_dir}",
                flush=True,
            )
            try:
                if name == CLASSICAL:
                    classical_run(out, seed)
                    continue
                train_opts = _train_opts(opts, iters, seed, pretrained)
                source = TRAINED_AS.get(name)
                trained = source and finished_result(out / "runs" / source / f"seed{seed}")
                # the other row's weights count only if trained exactly so (iterations, seed)
                if trained and trained["opts"] == [str(o) for o in train_opts]:
                    evaluate_trained_as(out, name, source, config, opts, seed, retrain)
                else:
                    train_and_record(
                        config, run_dir, train_opts, roots, retrain=retrain, what=label
                    )
                if not no_calibrate:
                    calibrated_run(out, name, config, opts, seed, objective, *calibration_trials)
                    for variant, (row, v_opts, _) in test_variants.items():
                        if row == name:
                            calibrated_run(
                                out,
                                variant,
                                config,
                                v_opts,
                                seed,
                                objective,
                                *calibration_trials,
                                weights_of=row,
                            )
                    if name + FINAL in finals:
                        calibrated_run(
                            out,
                            name + FINAL,
                            config,
                            opts,
                            seed,
                            objective,
                            *calibration_trials,
                            weights_of=name,
                            final=True,
                        )
            except (RuntimeError, ValueError) as e:
                # go on with the other runs; re-running retries this one
                print(f"error: {e}", file=sys.stderr, flush=True)
                failed.append(f"{label}, seed {seed}")
            write_summary(out, runs, seeds, iters, summary, pretrained, objective)
    print(write_summary(out, runs, seeds, iters, summary, pretrained, objective))
    print(f"summary: {out / summary}")
    if figures:
        write_figures(out, runs, seeds[0], objective)
    if failed:
        print("failed (re-run to retry): " + "; ".join(failed), file=sys.stderr)
    return failed
