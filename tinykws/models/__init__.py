"""Model zoo: registry, reusable blocks, KWS architectures and a deployment cost counter.

>>> from tinykws.models import create_model, count_cost
>>> m = create_model("dscnn_mlperf")
>>> count_cost(m).macs
2656768
"""
from .registry import create_model, list_models, register_model
from .cost import LayerCost, ModelCost, count_cost
from .blocks import ConvBNAct, DepthwiseSeparable, InvertedResidual, MBConv
from . import cnn, dscnn, raw  # noqa: F401  (registers the models)
from . import mbnet  # noqa: F401  (registers mbnet, mbnet_raw: models from architecture search)
from . import resnets  # noqa: F401  (registers bcresnet, tcresnet8, tcresnet14)

__all__ = [
    "create_model", "list_models", "register_model", "count_cost", "ModelCost", "LayerCost",
    "ConvBNAct", "DepthwiseSeparable", "InvertedResidual", "MBConv",
]
