"""Reproducible experiment runs: train through the package's training program (the one child
process), calibrate and evaluate in this process, resumably, and tabulate."""

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
    DatasetRoot,
    finished_result,
    train,
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
    "train",
    "train_and_record",
    "DatasetRoot",
    "trained_weights",
    "train_net_command",
    "TRAIN_NET_MODULE",
]
