"""Mixed precision: measure which layers suffer most from 4 bits, give those 8 bits, stay within a size budget.

Taught in 06. Units: one linear layer each (SmolLM2: 210), one layer type across all blocks, or one block.
Two sensitivity measures: the KL divergence of next-token distributions from the fp32 model when only that
unit is int4 (exact but one model run per unit), and a Fisher (second-order) estimate of the loss increase,
1/2 sum_i F_ii (q_i - w_i)^2 with F the mean squared gradient of the loss, for every layer at once from a
few backward passes: it counts what a layer's error does downstream, not only at its own output.
The allocation upgrades units to int8 greedily by sensitivity saved per extra bit while within budget.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .layers import W4A16Linear, W8A16Linear, fit_group_size
from .linear_quant import QuantScheme, quantize_tensor
from .sizes import weight_storage_bits
from .validation import InputTypeError, check_bool, check_choice, check_real

__all__ = ["UNIT_KINDS", "layer_units", "rtn_int4_weight", "unit_sensitivity", "fisher_sensitivity",
           "bits_per_weight_of", "allocate_bits", "apply_allocation"]

UNIT_KINDS = ("type", "block", "layer")


def _matches(name: str, exclude: tuple[str, ...]) -> bool:
    return any(name == e or name.endswith("." + e) for e in exclude)


def layer_units(model: nn.Module, by: str = "type", exclude: tuple[str, ...] = ("lm_head",)) -> dict[str, list[str]]:
    """Linear layer names grouped by type ("self_attn.q_proj" in every block), by block ("layers.3") or one each."""
    if by not in UNIT_KINDS:
        raise ValueError(f"by must be one of {UNIT_KINDS}, got {by!r}")
    units: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or _matches(name, exclude):
            continue
        match = re.search(r"layers\.(\d+)\.(.+)$", name)
        key = name if by == "layer" or not match else (match.group(2) if by == "type" else f"layers.{match.group(1)}")
        units.setdefault(key, []).append(name)
    if not units:
        raise ValueError("the model has no linear layers outside the excluded ones")
    return units


def rtn_int4_weight(weight: torch.Tensor, group_size: int = 128, symmetric: bool = True) -> torch.Tensor:
    """The weight a W4A16Linear.from_linear(..., adapt_group_size=True) layer computes with."""
    symmetric = check_bool(symmetric, "symmetric")
    group_size = fit_group_size(weight.shape[1], group_size)
    scheme = (QuantScheme(bits=4, granularity="per_group", group_size=group_size) if symmetric else
              QuantScheme(bits=4, symmetric=False, signed=False, granularity="per_group", group_size=group_size,
                          zero_point_domain="float"))
    return quantize_tensor(weight, scheme).dequantize().to(weight.dtype)


@torch.no_grad()
def unit_sensitivity(model: nn.Module, windows: torch.Tensor, units: dict[str, list[str]], group_size: int = 128,
                     symmetric: bool = True, progress: bool = False) -> dict[str, float]:
    """Mean KL(fp32 || model with only this unit in int4) over all next-token positions, per unit (nats).

    The model is quantized and restored in place, one unit at a time; its weights are unchanged afterwards.
    """
    if windows.dim() != 2 or windows.shape[0] == 0:
        raise ValueError(f"windows must be a non-empty (n, tokens) tensor, got shape {tuple(windows.shape)}")
    reference = [F.log_softmax(model(input_ids=w.unsqueeze(0)).logits.double()[0], dim=-1) for w in windows]
    sensitivity = {}
    for unit, names in tqdm(units.items(), desc="sensitivity", disable=not progress, leave=False):
        layers = [model.get_submodule(name) for name in names]
        originals = [layer.weight.detach().clone() for layer in layers]
        try:
            for layer in layers:
                layer.weight.copy_(rtn_int4_weight(layer.weight, group_size, symmetric))
            kl = 0.0
            for log_p, window in zip(reference, windows):
                log_q = F.log_softmax(model(input_ids=window.unsqueeze(0)).logits.double()[0], dim=-1)
                kl += (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()
            sensitivity[unit] = kl / len(windows)
        finally:
            for layer, original in zip(layers, originals):
                layer.weight.copy_(original)
    return sensitivity


@torch.enable_grad()
def fisher_sensitivity(model: nn.Module, windows: torch.Tensor, names: list[str],
                       quantize: Callable[[str, torch.Tensor], torch.Tensor], progress: bool = False) -> dict[str, float]:
    """Estimated loss increase per layer, 1/2 sum_i F_ii (quantize(w)_i - w_i)^2, F_ii = mean over windows of g_i^2.

    g: gradient of one window's mean next-token loss. One forward and backward pass per window serves every
    layer; the model's weights and requires_grad flags are unchanged afterwards.
    """
    if windows.dim() != 2 or windows.shape[0] == 0:
        raise ValueError(f"windows must be a non-empty (n, tokens) tensor, got shape {tuple(windows.shape)}")
    layers = {name: model.get_submodule(name) for name in names}
    flags = {p: p.requires_grad for p in model.parameters()}
    fisher = {name: torch.zeros_like(layer.weight, dtype=torch.float32) for name, layer in layers.items()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers.values():
            layer.weight.requires_grad_(True)
        for window in tqdm(windows, desc="Fisher", disable=not progress, leave=False):
            loss = model(input_ids=window.unsqueeze(0), labels=window.unsqueeze(0)).loss
            grads = torch.autograd.grad(loss, [layer.weight for layer in layers.values()])
            for name, grad in zip(layers, grads):
                fisher[name] += grad.float().pow(2) / len(windows)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    with torch.no_grad():
        return {name: 0.5 * (fisher[name] * (quantize(name, layer.weight) - layer.weight).float().pow(2)).sum().item()
                for name, layer in layers.items()}


def bits_per_weight_of(linear: nn.Linear, bits: int, group_size: int = 128, symmetric: bool = True,
                       zero_point_domain: str = "int", scale_bits: int = 32) -> float:
    """Storage per weight (helper.weight_storage_bits): int8 one scale per row; int4 per group (adapted to in).

    Defaults: the course's packed layers, 8 + 32/in (W8A16, fp32 scales) or 4 + 32/g (W4A16, symmetric).
    """
    if bits == 8:
        return weight_storage_bits(8, linear.in_features, True, "int", scale_bits)
    if bits == 4:
        return weight_storage_bits(4, fit_group_size(linear.in_features, group_size), symmetric, zero_point_domain,
                                   scale_bits)
    raise ValueError(f"mixed precision here chooses between 4 and 8 bits, got {bits}")


def allocate_bits(model: nn.Module, units: dict[str, list[str]], sensitivity: dict[str, float],
                  budget_bits: float, group_size: int = 128, symmetric: bool = True, zero_point_domain: str = "int",
                  scale_bits: int = 32) -> dict[str, int]:
    """Bits (4 or 8) per unit: start all at 4, upgrade the units with most sensitivity per extra bit within budget.

    Costs are the storage of the int4 grid (symmetric, zero_point_domain, scale_bits) and of int8 per row.
    """
    budget_bits = check_real(budget_bits, "budget_bits", low=0, low_open=True)
    if not isinstance(units, dict) or not units:
        raise ValueError("units must be a non-empty dict of unit -> layer names (from layer_units)")
    missing = [unit for unit in units if unit not in sensitivity]
    if missing:
        raise ValueError(f"sensitivity has no value for {missing[:3]}")
    for unit in units:
        check_real(sensitivity[unit], f"sensitivity[{unit!r}]")
    sizes = {unit: [(model.get_submodule(n).weight.numel(), model.get_submodule(n)) for n in names]
             for unit, names in units.items()}
    total = sum(count for layers in sizes.values() for count, _ in layers)

    def cost(unit: str, bits: int) -> float:  # bits spent on this unit
        return sum(count * bits_per_weight_of(layer, bits, group_size, symmetric, zero_point_domain, scale_bits)
                   for count, layer in sizes[unit])

    allocation = {unit: 4 for unit in units}
    spent = sum(cost(unit, 4) for unit in units)
    if spent / total > budget_bits + 1e-9:
        raise ValueError(f"the budget {budget_bits} bits/weight is below all-int4 ({spent / total:.3f})")
    extra = {unit: cost(unit, 8) - cost(unit, 4) for unit in units}
    for unit in sorted(units, key=lambda u: sensitivity[u] / extra[u], reverse=True):
        if (spent + extra[unit]) / total <= budget_bits + 1e-9:
            allocation[unit] = 8
            spent += extra[unit]
    return allocation


def apply_allocation(model: nn.Module, units: dict[str, list[str]], allocation: dict[str, int],
                     group_size: int = 128) -> nn.Module:
    """Swap each unit's linear layers for W8A16Linear or W4A16Linear (symmetric, group_size), in place."""
    if not isinstance(allocation, dict):
        raise InputTypeError(f"allocation must be a dict of unit -> bits, got {type(allocation).__name__}")
    for unit in units:  # all checked before the first swap; bits 6 must not quietly become 4
        if unit not in allocation:
            raise ValueError(f"allocation has no bits for unit {unit!r}")
        check_choice(allocation[unit], f"allocation[{unit!r}]", (4, 8))
    for unit, names in units.items():
        bits = allocation[unit]
        for name in names:
            linear = model.get_submodule(name)
            layer = (W8A16Linear.from_linear(linear) if bits == 8 else
                     W4A16Linear.from_linear(linear, group_size, adapt_group_size=True))
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model

