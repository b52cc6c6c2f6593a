"""LLM.int8() (Dettmers et al. 2022): int8 matmul for most features, full precision for the outlier ones.

Taught in 06. Vector-wise int8: one scale per token (row of X) and one per output channel (row of W),
integer products summed exactly (int32 on hardware; exact in float64 here), then rescaled. The few input
feature dimensions where some |x| exceeds a threshold (6.0 in the paper) go through a full-precision
matmul instead, so the outliers never squeeze the int8 grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .smoothquant import activation_channel_absmax
from .validation import InputTypeError, check_float_tensor, check_real, check_tensor

__all__ = ["find_outlier_features", "int8_matmul_vectorwise", "llm_int8_linear", "LLMInt8Linear",
           "llm_int8_model"]


def find_outlier_features(model: nn.Module, windows: torch.Tensor, threshold: float = 6.0,
                          exclude: tuple[str, ...] = ("lm_head",)) -> dict[str, torch.Tensor]:
    """For each linear layer, the input feature dims where some calibration |x| exceeds threshold."""
    threshold = check_real(threshold, "threshold", low=0, finite=False)
    maxima = activation_channel_absmax(model, windows, exclude=exclude)
    return {name: torch.nonzero(absmax > threshold).flatten() for name, absmax in maxima.items()}


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    for name, tensor in (("x", x), ("weight", weight)):
        check_tensor(tensor, name)
        if not tensor.is_floating_point():
            raise InputTypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {weight.shape[1]}")
    if not (torch.isfinite(x).all() and torch.isfinite(weight).all()):
        raise ValueError("x or weight contains NaN or Inf: int8 scales cannot be chosen")


def _int8_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (rows.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)  # (rows, 1)
    return torch.clamp(torch.round(rows / scale), -127, 127), scale


EXACT_FP32_TERMS = 1024  # int8 x int8 products summed exactly in fp32: 1024 * 127^2 < 2^24


def int8_matmul_vectorwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T with int8 x (per-token absmax) and int8 W (per-output-row absmax), integer-exact accumulation."""
    _check(x, weight)
    rows = x.reshape(-1, x.shape[-1]).float()  # (tokens, in)
    x_codes, x_scale = _int8_rows(rows)
    w_codes, w_scale = _int8_rows(weight.float())
    accumulated = torch.zeros(rows.shape[0], weight.shape[0], dtype=torch.float64)
    for start in range(0, rows.shape[1], EXACT_FP32_TERMS):
        # Each chunk's partial sums are integers below 1024 * 127^2 < 2^24, exact in fp32 (any summation order);
        # chunks add in float64: the whole sum is exact, like an int32 accumulator, at fp32 GEMM speed.
        chunk = slice(start, start + EXACT_FP32_TERMS)
        accumulated += (x_codes[:, chunk] @ w_codes[:, chunk].T).double()
    out = accumulated.float() * x_scale * w_scale.T  # (tokens, out)
    return out.reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)


def llm_int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    threshold: float = 6.0) -> torch.Tensor:
    """Outlier columns (any |x| > threshold) in full precision, the rest vector-wise int8; threshold 0 = F.linear."""
    _check(x, weight)
    threshold = check_real(threshold, "threshold", low=0, finite=False)  # inf: pure int8; NaN would mean that too
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    rows = x.reshape(-1, x.shape[-1])
    outliers = (rows.abs() > threshold).any(dim=0)  # (in,)
    regular = ~outliers
    out = torch.zeros(rows.shape[0], weight.shape[0], dtype=x.dtype)
    if outliers.any():
        out = out + rows[:, outliers] @ weight[:, outliers].T.to(x.dtype)
    if regular.any():
        out = out + int8_matmul_vectorwise(rows[:, regular], weight[:, regular])
    if bias is not None:
        out = out + bias
    if not torch.isfinite(out).all():  # finite inputs, but products beyond the dtype's range
        raise ValueError(f"x W^T overflows {out.dtype} (max |x| = {rows.abs().max().item():.3g}, max |weight| = "
                         f"{weight.abs().max().item():.3g}): scale the inputs down")
    return out.reshape(*x.shape[:-1], weight.shape[0])


class LLMInt8Linear(nn.Module):
    """A linear layer computing with llm_int8_linear; records the share of input columns kept in full precision.

    A simulation of the numerics (bitsandbytes' Linear8bitLt stores the weight in int8 too).
    """

    def __init__(self, linear: nn.Linear, threshold: float = 6.0) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise InputTypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        threshold = check_real(threshold, "threshold", low=0, finite=False)
        self.in_features, self.out_features, self.threshold = linear.in_features, linear.out_features, threshold
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.outlier_columns = 0
        self.calls = 0

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold: float = 6.0) -> "LLMInt8Linear":
        """Wrap an existing nn.Linear."""
        return cls(linear, threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x_outliers W_outliers^T (fp) + int8(x_rest) int8(W_rest)^T, rescaled, + b."""
        self.outlier_columns += int((x.reshape(-1, x.shape[-1]).abs() > self.threshold).any(dim=0).sum())
        self.calls += 1
        return F.linear(x, self.weight, self.bias) if self.threshold == 0 else llm_int8_linear(
            x, self.weight, self.bias, self.threshold)


@torch.no_grad()
def llm_int8_model(model: nn.Module, threshold: float = 6.0, exclude: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Swap every linear layer (but lm_head) for LLMInt8Linear, in place; threshold inf = pure int8."""
    threshold = check_real(threshold, "threshold", low=0, finite=False)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)]
    for name, linear in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, LLMInt8Linear(linear, threshold))
    return model
