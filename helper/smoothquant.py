"""SmoothQuant (Xiao et al. 2022): move activation outliers into the weights, then quantize both to int8.

Taught in 06. Activations of LLMs have a few channels with huge values; a per-token int8 grid sized for
them crushes every other channel. Dividing input channel j by s_j = max|X_j|^alpha / max|W_j|^(1-alpha)
and multiplying the weights' column j by s_j leaves X W^T unchanged, but flattens X. The division folds
into the norm before (free). W8A8 here is *simulated*: int8 fake quantization in fp32, to measure accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .awq import LLAMA_SCALE_GROUPS, ScaleGroup, apply_scale
from .layerwise import decoder_blocks
from .linear_quant import QuantScheme, quantize_tensor
from .validation import (InputTypeError, check_choice, check_float_tensor, check_int_in_range, check_probability,
                         check_real, check_token_ids)

__all__ = ["ACTIVATION_MODES", "activation_channel_absmax", "smoothing_scales", "smooth_model", "fake_int8_rows",
           "W8A8FakeLinear", "w8a8_model"]

ACTIVATION_MODES = ("per_token", "per_tensor")


@torch.no_grad()
def activation_channel_absmax(model: nn.Module, windows: torch.Tensor, batch_size: int = 4,
                              exclude: tuple[str, ...] = ("lm_head",)) -> dict[str, torch.Tensor]:
    """max|X_j| per input channel of every linear layer, over calibration windows (disjoint from evaluation)."""
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[0] == 0:
        raise ValueError("no calibration data: windows must be a non-empty (n, tokens) tensor of token ids")
    check_token_ids(windows, "windows", _vocab_size(model))
    batch_size = check_int_in_range(batch_size, "batch_size", 1)
    absmax: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0).float()
            absmax[name] = x if name not in absmax else torch.maximum(absmax[name], x)
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)]
    try:
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return absmax


def _vocab_size(model: nn.Module) -> int | None:
    """How many token ids the model's input embedding takes, if it has one."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return getattr(embeddings, "num_embeddings", None)


def _check_maxima(x: object, name: str) -> torch.Tensor:
    check_float_tensor(x, name)
    if (x < 0).any():
        raise ValueError(f"{name} holds maxima of |x|, which cannot be negative")
    return x


def smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1 - alpha); both maxima clamped to >= 1e-5 so s is finite and > 0."""
    check_probability(alpha, "alpha")
    _check_maxima(act_absmax, "act_absmax")
    _check_maxima(weight_absmax, "weight_absmax")
    if act_absmax.shape != weight_absmax.shape:
        raise ValueError(f"one maximum per channel each: {tuple(act_absmax.shape)} vs {tuple(weight_absmax.shape)}")
    return act_absmax.clamp(min=1e-5).pow(alpha) / weight_absmax.clamp(min=1e-5).pow(1 - alpha)


@torch.no_grad()
def smooth_model(model: nn.Module, act_absmax: dict[str, torch.Tensor], alpha: float = 0.5,
                 groups: tuple[ScaleGroup, ...] = LLAMA_SCALE_GROUPS) -> nn.Module:
    """Fold SmoothQuant's scales into each block (norm -> q/k/v, norm -> gate/up, up -> down), in place.

    The fp32 function is unchanged; act_absmax comes from activation_channel_absmax on the unsmoothed model.
    """
    check_probability(alpha, "alpha")
    if not isinstance(act_absmax, dict):
        raise InputTypeError(f"act_absmax must be a dict of maxima per layer name, got {type(act_absmax).__name__}")
    for key, value in act_absmax.items():  # all checked before the first fold: a NaN never reaches the model
        _check_maxima(value, f"act_absmax[{key!r}]")
    for index, block in enumerate(decoder_blocks(model)):
        prefix = next(name for name, module in model.named_modules() if module is block)
        for group in groups:
            layers = [block.get_submodule(name) for name in group.layers]
            key = f"{prefix}.{group.layers[0]}"
            if key not in act_absmax:
                raise ValueError(f"no activation maxima for {key}: run activation_channel_absmax on this model")
            weight_absmax = torch.stack([layer.weight.abs().amax(dim=0) for layer in layers]).amax(dim=0)
            apply_scale(block.get_submodule(group.previous), layers,
                        smoothing_scales(act_absmax[key], weight_absmax.float(), alpha))
    return model


def fake_int8_rows(x: torch.Tensor, absmax: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric int8 fake quantization: per row of x (dynamic, per token), or with one given absmax (static)."""
    check_float_tensor(x, "x")
    if absmax is not None and not isinstance(absmax, torch.Tensor):
        absmax = torch.tensor(check_real(absmax, "absmax", low=0))
    elif absmax is not None:
        _check_maxima(absmax, "absmax")
    rows = x.reshape(-1, x.shape[-1]).float()  # (tokens, features)
    if absmax is None:
        absmax = rows.abs().amax(dim=1, keepdim=True)
    scale = (absmax / 127).clamp(min=1e-12)
    return (torch.clamp(torch.round(rows / scale), -127, 127) * scale).reshape(x.shape).to(x.dtype)


class W8A8FakeLinear(nn.Module):
    """Simulated W8A8: int8 per-output-channel weights, int8 activations per token (dynamic) or per tensor (static)."""

    def __init__(self, linear: nn.Linear, activations: str = "per_token", act_absmax: float | None = None) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise InputTypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        if activations not in ACTIVATION_MODES:
            raise ValueError(f"activations must be one of {ACTIVATION_MODES}, got {activations!r}")
        if activations == "per_tensor" and act_absmax is None:
            raise ValueError("static per-tensor activations need act_absmax from calibration")
        if act_absmax is not None:
            act_absmax = check_real(act_absmax, "act_absmax", low=0)  # NaN or Inf would make every output NaN
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.activations = activations
        scheme = QuantScheme(bits=8, granularity="per_channel", restricted=True)
        self.register_buffer("weight", quantize_tensor(linear.weight.detach(), scheme).dequantize())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.register_buffer("act_absmax", None if act_absmax is None else torch.tensor(float(act_absmax)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = Q8(x) Q8(W)^T + b, all in fp32 (a simulation of an int8 GEMM's numerics, not its speed)."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputTypeError(f"x must be floating-point activations, got "
                                 f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.dtype != self.weight.dtype:
            raise InputTypeError(f"x is {x.dtype}; this simulation computes in {self.weight.dtype}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must end in {self.in_features} features, got shape {tuple(x.shape)}")
        absmax = self.act_absmax if self.activations == "per_tensor" else None
        return F.linear(fake_int8_rows(x, absmax), self.weight, self.bias)


@torch.no_grad()
def w8a8_model(model: nn.Module, activations: str = "per_token", act_absmax: dict[str, torch.Tensor] | None = None,
               exclude: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Swap every linear layer (but lm_head) for W8A8FakeLinear, in place; static mode needs act_absmax."""
    check_choice(activations, "activations", ACTIVATION_MODES)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)]
    for name, linear in targets:
        static = None
        if activations == "per_tensor":
            if act_absmax is None or name not in act_absmax:
                raise ValueError(f"static per-tensor activations need calibrated maxima for {name}")
            static = act_absmax[name].max().item()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, W8A8FakeLinear(linear, activations, static))
    return model
