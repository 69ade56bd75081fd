"""Knowledge distillation (Hinton et al. 2015): a student learns from the softened outputs of one or
more teacher models trained with tinykws on the same labels.

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels)

where p^T = softmax(logits / T). An ensemble of teachers gives the average of their softened
probabilities. Each teacher reads the training batch through its own front end (teachers and
student may use different MFCC presets or the raw waveform): the same augmented waveforms as the
student, before SpecAugment (the masks are drawn for the student's features only).

    teachers = Teachers.load(["runs/big/best.pt", "nas-kws"], labels, temperature=4, alpha=0.5)
    soft = teachers.soft_targets(waves)            # (B, classes), no gradient
    loss = teachers.loss(student_logits, y, soft, label_smoothing=0.1)
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio import build_frontend
from .checkpoint import load_model


def soft_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Average over teachers of softmax(logits / T): (B, classes) probabilities."""
    if not teacher_logits:
        raise ValueError("soft targets need at least one teacher")
    return torch.stack([F.softmax(z.float() / temperature, dim=1) for z in teacher_logits]).mean(0)


def kd_loss(student_logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(soft || softmax(student / T)), averaged over the batch (T^2 keeps the gradient scale
    of the soft term independent of T)."""
    logp = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(logp, soft, reduction="batchmean") * temperature ** 2


def distill_loss(student_logits, y, soft, temperature: float, alpha: float, label_smoothing: float = 0.0):
    """alpha * kd_loss + (1 - alpha) * cross-entropy with the true labels."""
    ce = F.cross_entropy(student_logits, y, label_smoothing=label_smoothing)
    return alpha * kd_loss(student_logits, soft, temperature) + (1 - alpha) * ce


class Teachers(nn.Module):
    """Frozen teacher networks with their front ends (eval mode, no gradients)."""

    def __init__(self, nets, frontends, names, temperature: float = 4.0, alpha: float = 0.5):
        super().__init__()
        self.nets, self.frontends = nn.ModuleList(nets), nn.ModuleList(frontends)
        self.names, self.temperature, self.alpha = list(names), float(temperature), float(alpha)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def load(cls, sources, labels: list[str], temperature: float = 4.0, alpha: float = 0.5) -> "Teachers":
        """Teachers from model files or shipped names; each must predict exactly `labels`, in order."""
        nets, fes, names = [], [], []
        for src in sources:
            net, bundle = load_model(src)
            if list(bundle.labels) != list(labels):
                raise ValueError(f"teacher {src}: its labels {','.join(bundle.labels)} differ from the student's "
                                 f"{','.join(labels)} (a teacher must be trained on the same task)")
            nets.append(net)
            fes.append(build_frontend(bundle.frontend))
            names.append(str(src) if not Path(str(src)).exists() else str(Path(src)))
        return cls(nets, fes, names, temperature, alpha)

    def train(self, mode: bool = True):  # teachers always run in eval mode
        return super().train(False)

    @torch.no_grad()
    def logits(self, waves: torch.Tensor) -> list[torch.Tensor]:
        return [net(fe(waves)) for net, fe in zip(self.nets, self.frontends)]

    @torch.no_grad()
    def soft_targets(self, waves: torch.Tensor) -> torch.Tensor:
        return soft_targets(self.logits(waves), self.temperature)

    def loss(self, student_logits, y, soft, label_smoothing: float = 0.0) -> torch.Tensor:
        return distill_loss(student_logits, y, soft, self.temperature, self.alpha, label_smoothing)
