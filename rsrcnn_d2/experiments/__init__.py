"""Reproducible experiment runs: train/evaluate through the ordinary tools, resumably, and tabulate."""
from .results import (REFERENCE_METRICS, SUMMARY_METRICS, mean_sd, pooled_reference,
                      pooled_results, pooled_strict, read_eval_results, seed_summary_table)
from .runner import (TINY_ROW_CONFIGS, TOOLS, finished_result, run_tool, train_and_record,
                     trained_weights)

__all__ = ["SUMMARY_METRICS", "REFERENCE_METRICS", "mean_sd", "pooled_strict", "pooled_reference",
           "pooled_results", "read_eval_results",
           "seed_summary_table", "finished_result", "train_and_record", "run_tool", "trained_weights", "TOOLS",
           "TINY_ROW_CONFIGS"]
