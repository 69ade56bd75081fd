"""Pruning: magnitude pruning by masks (unstructured, 1x4 / 1x8 vectors along the input channels,
whole kernels) or by removing output channels (a smaller dense network, via torch-pruning's
dependency graph), one-shot or on the gradual polynomial schedule with fine-tuning.

>>> from tinykws.prune import PruneConfig, prune_, prune_model
>>> prune_(model, PruneConfig(method="vector4", sparsity=0.75))          # in place, no training
>>> bundle = prune_model("dscnn-kws", PruneConfig(method="channel", sparsity=0.5, target="macs"), data=DIR)

See docs/compression.md.
"""
from .config import METHODS, PruneConfig, PruneError, config_from_dict, config_to_dict
from .core import (ChannelPruning, apply_masks, channel_ratio, compute_masks, keep_masks, masks_from_zeros,
                   polynomial_schedule, prunable_layers, prune_, prune_dict, sparsity_stats)
from .finetune import plan_steps, prune_model

__all__ = ["METHODS", "PruneConfig", "PruneError", "config_from_dict", "config_to_dict", "prune_", "compute_masks",
           "apply_masks", "masks_from_zeros", "keep_masks", "sparsity_stats", "polynomial_schedule", "ChannelPruning",
           "channel_ratio", "prune_dict", "prunable_layers", "plan_steps", "prune_model"]
