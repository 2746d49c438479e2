"""Reproducible experiment runs: train/evaluate through the package's training program, resumably,
and tabulate."""

from .results import (
    REFERENCE_METRICS,
    SUMMARY_METRICS,
    mean_sd,
    pooled_reference,
    pooled_results,
    pooled_strict,
    read_eval_results,
    seed_summary_table,
)
from .runner import (
    TRAIN_NET_MODULE,
    finished_result,
    run_tool,
    train_and_record,
    train_net_command,
    trained_weights,
)

__all__ = [
    "SUMMARY_METRICS",
    "REFERENCE_METRICS",
    "mean_sd",
    "pooled_strict",
    "pooled_reference",
    "pooled_results",
    "read_eval_results",
    "seed_summary_table",
    "finished_result",
    "train_and_record",
    "run_tool",
    "trained_weights",
    "train_net_command",
    "TRAIN_NET_MODULE",
]
