"""Quantization: fake-quantized training and calibration, integer-only inference, TFLite/ONNX interop."""
from .config import LearnedBitsConfig, PTQConfig, QATConfig, config_from_dict, config_to_dict, preset
from .graph import QuantizationError, trace
from .quantize import (apply_quant_dict, bit_penalty, bit_stats, calibrate, fold_batchnorm, freeze_bits,
                       meet_bit_targets, quantize_)
from .integer import IntModel, IntOp, QTensor, to_integer
from .tflite import evaluate_tflite, export_tflite, read_tflite, tflm_run, to_tflite_bytes
from .recipes import int8_summary, quant_report, quantize_model, report_table, split_features
from .onnx_export import export_onnx, run_onnx
