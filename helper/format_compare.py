"""Lesson 08's weight formats side by side at their real bits/weight, and its figures. Taught in 08."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .codebooks import codebook_bits_per_parameter, codebook_quantize_model, nf4_codebook
from .methods import grid_bits_per_weight
from .microscaling import (MX_FORMATS, block_quantize_model, decode_element, mx_bits_per_weight,
                           mx_shared_exponent, nvfp4_bits_per_weight, quantize_nvfp4)
from .mixed_precision import rtn_int4_weight
from .validation import InputTypeError, check_choice, check_float_tensor

__all__ = ["LESSON_08_FORMATS", "apply_weight_format", "scale_headroom", "plot_scale_headroom"]

LESSON_08_FORMATS = ("MXFP8", "MXFP6", "MXFP4", "NVFP4", "NF4", "int4 g32 RTN", "int4 g128 RTN")


def _linear_weights(model: nn.Module, exclude: tuple[str, ...] = ("lm_head",)) -> list[nn.Linear]:
    return [m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)]


@torch.no_grad()
def apply_weight_format(model: nn.Module, fmt: str) -> tuple[nn.Module, float]:
    """(a quantized copy of model, its bits per linear weight) for one of LESSON_08_FORMATS; lm_head untouched.

    Bits: MX 8 / 32 per weight for the E8M0 scale; NVFP4 4.5 plus its fp32 tensor scale; NF4 blocks of 64 with
    an fp32 absmax (4.5); int4 RTN symmetric with an fp16 scale per group (g128 is 96 on 576 inputs).
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_choice(fmt, "fmt", LESSON_08_FORMATS)
    quantized = copy.deepcopy(model)
    layers = _linear_weights(quantized)
    weights = sum(layer.weight.numel() for layer in layers)
    if fmt in MX_FORMATS:
        block_quantize_model(quantized, fmt)
        return quantized, mx_bits_per_weight(MX_FORMATS[fmt])
    if fmt == "NVFP4":
        block_quantize_model(quantized, fmt)
        bits = sum(nvfp4_bits_per_weight(layer.weight.numel()) * layer.weight.numel() for layer in layers)
        return quantized, bits / weights
    if fmt == "NF4":
        codebook_quantize_model(quantized, nf4_codebook(), 64)
        return quantized, codebook_bits_per_parameter(4, 64)
    group_size = 32 if fmt == "int4 g32 RTN" else 128
    for layer in layers:
        layer.weight.copy_(rtn_int4_weight(layer.weight, group_size, symmetric=True))
    return quantized, grid_bits_per_weight(model, 4, group_size, True, "int", 16)


def scale_headroom(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per block, absmax / (6 x the block's real scale): 1 means the block's largest weight lands on E2M1's
    top value 6; below 1 the top of the grid goes unused, above 1 the largest weights saturate at 6.

    MXFP4 (blocks of 32, scale 2^(floor(log2 absmax) - 2)) spreads it over [2/3, 4/3); NVFP4 (blocks of 16,
    E4M3 scale of absmax / 6) keeps it within a few % of 1.
    """
    check_float_tensor(weight, "weight")
    blocks = weight.detach().float().reshape(-1, 32)
    absmax = blocks.abs().amax(dim=1)
    mx_scale = torch.ldexp(torch.ones_like(absmax), mx_shared_exponent(absmax, "e2m1"))
    nv = quantize_nvfp4(weight.detach().float().reshape(-1, 16))
    nv_scale = decode_element(nv.scale_codes, "e4m3").reshape(-1) * nv.tensor_scale
    nv_absmax = weight.detach().float().reshape(-1, 16).abs().amax(dim=1)
    keep = absmax > 0
    return {"MXFP4": (absmax / (6 * mx_scale))[keep], "NVFP4": (nv_absmax / (6 * nv_scale))[nv_absmax > 0]}


def plot_scale_headroom(weight: torch.Tensor, title: str = "") -> Figure:
    """Histogram of scale_headroom for MXFP4 and NVFP4 blocks of one weight matrix."""
    ratios = scale_headroom(weight)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    bins = torch.linspace(0.6, 1.4, 81).tolist()
    for (name, ratio), colour in zip(ratios.items(), ("tab:red", "tab:blue")):
        ax.hist(ratio.clamp(0.6, 1.4).tolist(), bins=bins, alpha=0.6, color=colour,
                label=f"{name}: {(ratio > 1.001).float().mean():.0%} of blocks saturate")
    ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("block absmax / (6 x block scale)   (1 = largest weight exactly on the top E2M1 value)")
    ax.set_ylabel("blocks")
    ax.set_title(title or "How well each block's scale fits its largest weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
