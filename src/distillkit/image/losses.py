"""Losses between network outputs and targets: label losses for training, discrepancies for APM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_LOSSES = ("l1", "mse", "kl", "soft_ce", "ce")
DISCREPANCIES = ("l1", "mse", "kl")


def label_loss(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean loss of logits `outputs` against `targets` (teacher logits, or class ids for 'ce').

    l1: mean absolute difference of raw logits (APM's default); mse: mean squared difference;
    kl: KL(softmax(targets) || softmax(outputs)) per example; soft_ce: cross-entropy against
    softmax(targets); ce: cross-entropy against hard labels.
    """
    if name == "ce":
        if targets.dtype.is_floating_point:
            targets = targets.argmax(1)
        return F.cross_entropy(outputs, targets)
    if not targets.dtype.is_floating_point:
        raise ValueError(f"loss '{name}' needs soft targets (teacher logits), got class ids")
    if name == "l1":
        return (outputs - targets).abs().mean()
    if name == "mse":
        return (outputs - targets).pow(2).mean()
    if name == "kl":
        return F.kl_div(F.log_softmax(outputs, 1), F.log_softmax(targets, 1), log_target=True, reduction="batchmean")
    if name == "soft_ce":
        return -(F.softmax(targets, 1) * F.log_softmax(outputs, 1)).sum(1).mean()
    raise ValueError(f"unknown loss '{name}'; choose one of {LABEL_LOSSES}")
