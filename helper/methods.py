"""Lesson 06's comparison: each method as a small config (the "what") and one function that applies it. From 06.

Every method quantizes all linear layers of the decoder blocks (never lm_head or the embeddings),
calibrates on windows disjoint from the evaluation windows, and is scored with the lesson-04 kit.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from ._text import text_table
from .awq import AWQConfig, awq_quantize_model, rtn_weight
from .evaluate import linear_weight_bits, perplexity
from .gptq import GPTQConfig, gptq_pack, gptq_quantize_model
from .layers import W2A16Linear, W4A16Linear, W8A16Linear, fit_group_size, replace_linear
from .mixed_precision import allocate_bits, apply_allocation, layer_units, unit_sensitivity

__all__ = ["Method", "LESSON_06_METHODS", "grid_bits_per_weight", "apply_method", "evaluate_methods",
           "method_table_text"]

KINDS = ("fp32", "rtn", "gptq", "awq", "mixed", "w8a8", "smoothquant", "llm_int8")


@dataclass(frozen=True)
class Method:
    """One row of the table: what to apply and with which grid."""

    name: str
    kind: str
    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    act_order: bool = False
    clip_search: bool = False  # GPTQ only: MSE-searched group ranges (GPTQConfig.clip_search)
    budget_bits: float = 4.5  # mixed precision only
    activations: str = "per_token"  # W8A8 only: "per_token" (dynamic) or "per_tensor" (static, calibrated)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


LESSON_06_METHODS = (
    Method("fp32", "fp32", 32),
    Method("RTN int8 per-channel", "rtn", 8, None),
    Method("RTN int4 g128", "rtn", 4),
    Method("RTN int4 g128 scale+min", "rtn", 4, symmetric=False),
    Method("GPTQ int4 g128", "gptq", 4),
    Method("GPTQ int4 g128 act-order scale+min", "gptq", 4, symmetric=False, act_order=True),
    Method("AWQ int4 g128", "awq", 4),
    Method("AWQ int4 g128 scale+min", "awq", 4, symmetric=False),
    Method("mixed int4/int8 (<= 4.5 b/w)", "mixed", 4),
    Method("RTN int3 g128 scale+min", "rtn", 3, symmetric=False),
    Method("GPTQ int3 g128 act-order scale+min", "gptq", 3, symmetric=False, act_order=True),
    Method("GPTQ int3 g128 act-order scale+min MSE-clip", "gptq", 3, symmetric=False, act_order=True,
           clip_search=True),
    Method("RTN int2 g32 scale+min", "rtn", 2, 32, symmetric=False),
    Method("GPTQ int2 g32 act-order scale+min MSE-clip", "gptq", 2, 32, symmetric=False, act_order=True,
           clip_search=True),
)


def grid_bits_per_weight(model: nn.Module, bits: int, group_size: int | None, symmetric: bool = True,
                         exclude: tuple[str, ...] = ("lm_head",)) -> float:
    """Bits per linear weight of a per-group grid: codes + one fp32 scale (and fp32 minimum) per group.

    The same arithmetic as the course's packed layers, for widths (3 bits) that have no packed layer.
    """
    total_bits, total_weights = 0, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude):
            group = fit_group_size(module.in_features, group_size) if group_size else module.in_features
            groups = module.weight.numel() // group
            total_bits += module.weight.numel() * bits + groups * 32 * (1 if symmetric else 2)
            total_weights += module.weight.numel()
    return total_bits / total_weights


def _rtn(model: nn.Module, method: Method) -> nn.Module:
    if method.bits == 8:
        return replace_linear(model, W8A16Linear)
    if method.bits in (2, 4):
        layer = W4A16Linear if method.bits == 4 else W2A16Linear
        return replace_linear(model, layer, group_size=method.group_size, symmetric=method.symmetric,
                              adapt_group_size=True)
    config = AWQConfig(method.bits, method.group_size, method.symmetric)  # no packed layer: simulate the grid
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith("lm_head"):
                module.weight.copy_(rtn_weight(module.weight, config))
    return model


def apply_method(model: nn.Module, method: Method, calibration_windows: torch.Tensor,
                 progress: bool = False, fast: bool = False) -> tuple[nn.Module, float]:
    """A quantized copy of the model and its bits per linear weight; the original is untouched.

    Packed layers (int2/int4/int8) are measured from their tensors; simulated grids (int3, AWQ's scaled
    weights) use the same arithmetic (codes + fp32 scales and minimums). fast: the notebook's configuration
    (AWQ searches 10 alphas on 512 tokens; sensitivity on one window).
    """
    if method.kind not in ("fp32", "rtn", "gptq", "awq", "mixed"):
        raise ValueError(f"{method.kind} is applied with helper.smoothquant / helper.outliers, not apply_method")
    model = copy.deepcopy(model)
    if method.kind == "fp32":
        return model, 32.0
    if method.kind == "rtn":
        model = _rtn(model, method)
    elif method.kind == "gptq":
        config = GPTQConfig(method.bits, method.group_size, method.symmetric, act_order=method.act_order,
                            clip_search=method.clip_search)
        results = gptq_quantize_model(model, calibration_windows, config, progress=progress)
        if method.bits in (2, 4):
            gptq_pack(model, results)
    elif method.kind == "awq":
        config = AWQConfig(method.bits, method.group_size, method.symmetric,
                           **({"alphas": tuple(i / 10 for i in range(10)), "max_tokens": 512} if fast else {}))
        awq_quantize_model(model, calibration_windows, config, progress=progress)
    else:
        units = layer_units(model, "type")
        sensitivity = unit_sensitivity(model, calibration_windows[:1 if fast else 2], units, progress=progress)
        model = apply_allocation(model, units, allocate_bits(model, units, sensitivity, method.budget_bits), 128)
    packed = method.kind in ("rtn", "gptq", "mixed") and method.bits in (2, 4, 8)
    if packed:
        return model, linear_weight_bits(model)["bits_per_weight"]
    return model, grid_bits_per_weight(model, method.bits, method.group_size, method.symmetric)


def evaluate_methods(model: nn.Module, evaluation_windows: torch.Tensor, calibration_windows: torch.Tensor,
                     methods: tuple[Method, ...] = LESSON_06_METHODS, progress: bool = False, fast: bool = False,
                     batch_size: int = 4) -> list[dict[str, object]]:
    """Perplexity, bits per weight and seconds (quantization + evaluation) for each method."""
    rows = []
    for method in methods:
        start = time.perf_counter()
        quantized, bits = apply_method(model, method, calibration_windows, progress, fast)
        seconds_quantize = time.perf_counter() - start
        rows.append({"method": method.name, "perplexity": perplexity(quantized, evaluation_windows, batch_size),
                     "bits_per_weight": bits, "seconds_quantize": seconds_quantize,
                     "seconds": time.perf_counter() - start})
        del quantized
    return rows


def method_table_text(rows: list[dict[str, object]], base: float | None = None, with_seconds: bool = False) -> str:
    """The results as a text table; with base, also the change in perplexity relative to it."""
    header = ["method", "perplexity"] + (["vs fp32"] if base else []) + ["bits/weight"] + (
        ["quantize (s)"] if with_seconds else [])
    body = [[r["method"], f"{r['perplexity']:,.2f}"] + ([f"{100 * (r['perplexity'] / base - 1):+.0f} %"] if base else [])
            + [f"{r['bits_per_weight']:.2f}"] + ([f"{r['seconds_quantize']:.0f}"] if with_seconds else [])
            for r in rows]
    return text_table(header, body)
