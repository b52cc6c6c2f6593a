"""How much a lower-precision model differs from its reference. Started in 02, grown in 04."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["logit_error", "mean_cosine", "weight_differences"]


def _check_same_shape(reference: torch.Tensor, other: torch.Tensor) -> None:
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: reference {tuple(reference.shape)} vs other {tuple(other.shape)}")
    if reference.numel() == 0:
        raise ValueError("cannot compare empty tensors")


def logit_error(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Mean and max |other - reference|, computed in float32 whatever the inputs' dtypes."""
    _check_same_shape(reference, other)
    difference = (other.float() - reference.float()).abs()
    return {"mean_abs": difference.mean().item(), "max_abs": difference.max().item()}


def mean_cosine(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows (e.g. sentence embeddings), in float32."""
    _check_same_shape(reference, other)
    return F.cosine_similarity(reference.float(), other.float(), dim=-1).mean().item()


def weight_differences(reference: torch.nn.Module, other: torch.nn.Module) -> dict[str, float]:
    """Max |w_other - w_reference| per parameter name, for two copies of the same architecture."""
    other_params = dict(other.named_parameters())
    missing = [name for name, _ in reference.named_parameters() if name not in other_params]
    if missing:
        raise ValueError(f"the models differ in structure: {missing[:3]} missing from the other model")
    return {name: (other_params[name].detach().float() - param.detach().float()).abs().max().item()
            for name, param in reference.named_parameters()}
