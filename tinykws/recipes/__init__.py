"""Recipes: multi-stage jobs on model files and data sets built from the stages below (e.g.
quantize a trained model with its data set, fine-tune, evaluate, report)."""
from .quantize import int8_summary, load_int_model, quant_report, quantize_model, report_table, split_features

__all__ = ["int8_summary", "load_int_model", "quant_report", "quantize_model", "report_table", "split_features"]
