"""AWQ (Lin et al. 2023): protect the weights that meet large activations by scaling, then round to nearest.

Taught in 06. A few input channels carry much larger activations than the rest; their weights matter
most. Multiplying input channel j of W by s_j > 1 (and dividing the activation by s_j, which is free when
folded into the previous operation) shrinks that weight's relative rounding error. AWQ picks
s = s_x^alpha, with s_x the mean |x_j| of each input channel over calibration tokens, and searches alpha
in [0, 1) per group of layers that share one input, keeping the alpha with least output error.
alpha = 0 gives s = 1: plain round-to-nearest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .gptq import GPTQConfig, weight_scheme
from .layers import fit_group_size
from .layerwise import (BlockInputs, capture_block_inputs, decoder_blocks, linear_layers, quantize_blocks_sequentially,
                        run_block)
from .linear_quant import quantize_tensor

__all__ = ["AWQConfig", "ScaleGroup", "LLAMA_SCALE_GROUPS", "activation_scale", "awq_scales", "rtn_weight",
           "search_scale", "apply_scale", "awq_quantize_blocks", "awq_quantize_model"]


@dataclass(frozen=True)
class AWQConfig:
    """Bits and grid of the final RTN, the alphas to try, and how many calibration tokens the search uses."""

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    alphas: tuple[float, ...] = tuple(i / 20 for i in range(20))  # 0, 0.05, ..., 0.95, as in the paper's code
    max_tokens: int = 4096  # the search compares outputs on this many calibration vectors (evenly spaced)

    def __post_init__(self) -> None:
        GPTQConfig(self.bits, self.group_size, self.symmetric)  # validates bits, grid and group size
        if not self.alphas or any(not 0 <= a <= 1 for a in self.alphas):
            raise ValueError(f"alphas must be a non-empty list of values in [0, 1], got {self.alphas}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class ScaleGroup:
    """Layers that read the same input, and the operation before them that can absorb 1 / s."""

    previous: str  # an RMSNorm/LayerNorm (weight scaled) or a Linear (output rows scaled)
    layers: tuple[str, ...]


# In a Llama block: the norms feed q/k/v and gate/up; up_proj's output feeds down_proj linearly (times
# silu(gate)), so down_proj's scale folds into up_proj's rows. v_proj -> o_proj is skipped: with grouped-query
# attention v_proj has fewer outputs (192 in SmolLM2) than o_proj has inputs (576).
LLAMA_SCALE_GROUPS = (
    ScaleGroup("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ScaleGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ScaleGroup("mlp.up_proj", ("mlp.down_proj",)),
)


def activation_scale(x: torch.Tensor) -> torch.Tensor:
    """s_x: mean |x_j| of each input channel over all tokens, (in_features,)."""
    if x.numel() == 0:
        raise ValueError("no calibration data: activations are empty")
    return x.detach().reshape(-1, x.shape[-1]).float().abs().mean(dim=0)


def awq_scales(x_scale: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = s_x^alpha, normalised so that sqrt(max(s) min(s)) = 1 (keeps weights and activations in range)."""
    scales = x_scale.clamp(min=1e-4).pow(alpha)
    return scales / (scales.max() * scales.min()).sqrt()


def rtn_weight(weight: torch.Tensor, config: AWQConfig) -> torch.Tensor:
    """Round-to-nearest weight (dequantized) on the config's grid; groups adapt to in_features as in lesson 04."""
    group_size = fit_group_size(weight.shape[1], config.group_size) if config.group_size else weight.shape[1]
    return quantize_tensor(weight, weight_scheme(GPTQConfig(config.bits, group_size, config.symmetric),
                                                 group_size)).dequantize().to(weight.dtype)


def _subsample(x: torch.Tensor, max_tokens: int) -> torch.Tensor:
    x = x.reshape(-1, x.shape[-1])  # (tokens, in)
    if x.shape[0] <= max_tokens:
        return x
    return x[torch.linspace(0, x.shape[0] - 1, max_tokens).round().long()]


@torch.no_grad()
def search_scale(x: torch.Tensor, weights: list[torch.Tensor], config: AWQConfig) -> tuple[torch.Tensor, float, dict]:
    """Best per-channel scales for layers sharing input x: argmin_alpha ||x W^T - (x / s) Q(W s)^T||^2.

    Returns (scales, best alpha, {alpha: mean squared output error}).
    """
    x = _subsample(x.float(), config.max_tokens)
    reference = torch.cat([x @ w.float().T for w in weights], dim=1)  # (tokens, sum of out)
    x_scale = activation_scale(x)
    losses = {}
    for alpha in config.alphas:
        scales = awq_scales(x_scale, alpha)
        output = torch.cat([(x / scales) @ rtn_weight(w.float() * scales, config).T for w in weights], dim=1)
        losses[alpha] = (output - reference).pow(2).mean().item()
    best = min(losses, key=losses.get)
    return awq_scales(x_scale, best), best, losses


@torch.no_grad()
def apply_scale(previous: nn.Module, layers: list[nn.Linear], scales: torch.Tensor) -> None:
    """Fold 1/s into the previous op and s into the layers' input columns: the fp32 function is unchanged."""
    if isinstance(previous, nn.Linear):
        previous.weight.div_(scales.unsqueeze(1))  # its output rows feed our input channels
        if previous.bias is not None:
            previous.bias.div_(scales)
    elif hasattr(previous, "weight") and previous.weight is not None and previous.weight.shape == scales.shape:
        previous.weight.div_(scales)  # RMSNorm / LayerNorm: y = weight * normalised(x) (+ bias)
        if getattr(previous, "bias", None) is not None:
            previous.bias.div_(scales)
    else:
        raise ValueError(f"cannot fold scales into {type(previous).__name__}: need a Linear or a norm with a "
                         f"weight of shape {tuple(scales.shape)}")
    for layer in layers:
        layer.weight.mul_(scales.unsqueeze(0))


def awq_quantize_blocks(blocks: list[nn.Module] | nn.ModuleList, inputs: BlockInputs, config: AWQConfig = AWQConfig(),
                        groups: tuple[ScaleGroup, ...] = LLAMA_SCALE_GROUPS, progress: bool = False) -> dict[str, dict]:
    """Sequential AWQ: per block, search and fold scales for each group, then RTN every linear layer in place.

    Results per group: {"alpha": best alpha, "losses": {alpha: error}}. Weights end on the RTN grid
    (a simulation of the stored model: outputs equal a W{bits}A16 layer's).
    """

    def quantize_block(index: int, block: nn.Module, block_inputs: BlockInputs) -> dict[str, dict]:
        captured: dict[str, list[torch.Tensor]] = {group.layers[0]: [] for group in groups}
        handles = [block.get_submodule(name).register_forward_hook(
            lambda m, args, out, store=captured[name]: store.append(args[0].detach())) for name in captured]
        try:
            run_block(block, block_inputs)
        finally:
            for handle in handles:
                handle.remove()
        results = {}
        for group in groups:
            layers = [block.get_submodule(name) for name in group.layers]
            x = torch.cat([t.reshape(-1, t.shape[-1]) for t in captured[group.layers[0]]])
            scales, alpha, losses = search_scale(x, [layer.weight for layer in layers], config)
            apply_scale(block.get_submodule(group.previous), layers, scales)
            results[group.layers[0]] = {"alpha": alpha, "losses": losses}
        for layer in linear_layers(block).values():
            layer.weight.copy_(rtn_weight(layer.weight, config))
        return results

    return quantize_blocks_sequentially(blocks, inputs, quantize_block, progress, desc="AWQ")


@torch.no_grad()
def awq_quantize_model(model: nn.Module, calibration_windows: torch.Tensor, config: AWQConfig = AWQConfig(),
                       batch_size: int = 4, progress: bool = False) -> dict[str, dict]:
    """AWQ on every linear layer of a Llama-style decoder LM's blocks, in place (lm_head stays).

    calibration_windows: (n, tokens) ids, disjoint from evaluation windows (the course uses windows 16..).
    """
    inputs = capture_block_inputs(model, calibration_windows, batch_size)
    return awq_quantize_blocks(decoder_blocks(model), inputs, config, progress=progress)
