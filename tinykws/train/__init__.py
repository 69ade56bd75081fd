"""Training, evaluation and model files."""
from .checkpoint import ModelBundle, ModelFileError, load_bundle, load_model, save_bundle
from .evaluate import (EvalResult, evaluate_dir, evaluate_features, evaluate_tflite, format_result, plot_confusion,
                       predict_files, split_features)
from .trainer import TrainConfig, load_train_data, train

__all__ = ["ModelBundle", "ModelFileError", "load_bundle", "load_model", "save_bundle", "EvalResult",
           "evaluate_dir", "evaluate_features", "evaluate_tflite", "split_features", "format_result", "plot_confusion", "predict_files",
           "TrainConfig", "load_train_data", "train"]
