"""Quantization: post-training, QAT and trained bit-widths with fake quantization; integer-only
inference bit-exact with TFLite Micro; TFLite import/export and ONNX export.

>>> from tinykws.quant import QATConfig, quantize_, to_integer
>>> quantize_(model, QATConfig(weight_bits=4), calib=features)   # then fine-tune, then:
>>> im = to_integer(model); logits_q = im.run(im.quantize_input(features))

See docs/quantization.md.
"""
from .config import LearnedBitsConfig, PTQConfig, QATConfig, config_from_dict, config_to_dict, preset
from .graph import QuantizationError, trace
from .quantize import (apply_quant_dict, bit_penalty, bit_stats, calibrate, fold_batchnorm, freeze_bits,
                       meet_bit_targets, quantize_)
from .integer import IntModel, IntOp, QTensor, to_integer
from .tflite import TFLiteError, UnsupportedOpError, export_tflite, read_tflite, tflm_run, to_tflite_bytes
from .onnx_export import export_onnx, run_onnx

__all__ = [
    "PTQConfig", "QATConfig", "LearnedBitsConfig", "config_from_dict", "config_to_dict", "preset",
    "QuantizationError", "trace", "quantize_", "calibrate", "fold_batchnorm", "apply_quant_dict", "bit_stats",
    "bit_penalty", "meet_bit_targets", "freeze_bits", "IntModel", "IntOp", "QTensor", "to_integer",
    "to_tflite_bytes", "export_tflite", "read_tflite", "tflm_run", "TFLiteError", "UnsupportedOpError", "export_onnx", "run_onnx",
]
