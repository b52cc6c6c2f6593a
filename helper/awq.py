"""AWQ (Lin et al. 2023): protect the weights that meet large activations by scaling, then round to nearest.

Taught in 06. A few input channels carry much larger activations than the rest; their weights matter
most. Multiplying input channel j of W by s_j > 1 (and dividing the activation by s_j, which is free when
folded into the previous operation) shrinks that weight's relative rounding error. AWQ picks
s = s_x^alpha, with s_x the mean |x_j| of each input channel over calibration tokens, and searches alpha
in [0, 1) per group of layers that share one input, keeping the alpha with least output error.
alpha = 0 gives s = 1: plain round-to-nearest.

As the reference code (llm-awq's auto_scale / auto_clip) does it, search="block": the error is measured at
the output of the whole module the group feeds (the attention block for q/k/v, the MLP for gate/up,
down_proj itself), every block gets the full-precision model's inputs, and after scaling a clipping search
shrinks each output channel's and group's max |w| to the factor that minimises that group's output error.
search="layer" is the simpler variant kept as an ablation: error at the projections' own outputs,
inputs from the already quantized blocks, no clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .gptq import GPTQConfig, rtn_quantize_weight
from .validation import check_bool, check_float_tensor, check_real
from .layers import fit_group_size
from .layerwise import (BlockInputs, capture_block_inputs, decoder_blocks, linear_layers, quantize_blocks_sequentially,
                        run_block)

__all__ = ["AWQConfig", "ScaleGroup", "LLAMA_SCALE_GROUPS", "AWQ_SEARCHES", "activation_scale", "awq_scales",
           "rtn_weight", "search_scale", "search_block_scale", "clip_search", "apply_clip", "apply_scale",
           "awq_quantize_blocks", "awq_quantize_model"]

AWQ_SEARCHES = ("block", "layer")
NO_CLIP = ("q_proj", "k_proj")  # llm-awq leaves them: clipping them perturbs the q.k products too much


@dataclass(frozen=True)
class AWQConfig:
    """Bits and grid of the final RTN, the alphas to try, how many calibration tokens the search uses.

    search: "block" (llm-awq) or "layer" (the simpler variant, see the module docstring). clip: run the
    clipping search after scaling. quantize: False leaves the scaled (and clipped) weights in full precision,
    for GPTQ to quantize afterwards. zero_point_domain and scale_bits: the grid, as in GPTQConfig.
    """

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    alphas: tuple[float, ...] = tuple(i / 20 for i in range(20))  # 0, 0.05, ..., 0.95, as in the paper's code
    max_tokens: int = 4096  # block search: the first windows up to this many tokens; layer: evenly spaced
    search: str = "block"
    clip: bool = True
    clip_tokens: int = 512  # llm-awq's n_sample_token for the clipping search
    zero_point_domain: str = "float"
    scale_bits: int = 32
    quantize: bool = True

    def __post_init__(self) -> None:
        self.gptq_config()  # validates bits, grid, group size and scale precision
        check_bool(self.clip, "clip")
        check_bool(self.quantize, "quantize")
        if self.search not in AWQ_SEARCHES:
            raise ValueError(f"search must be one of {AWQ_SEARCHES}, got {self.search!r}")
        if self.clip_tokens < 1:
            raise ValueError(f"clip_tokens must be >= 1, got {self.clip_tokens}")
        if not self.alphas or any(not 0 <= a <= 1 for a in self.alphas):
            raise ValueError(f"alphas must be a non-empty list of values in [0, 1], got {self.alphas}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def gptq_config(self, group_size: int | None = None) -> GPTQConfig:
        """The same grid as a GPTQConfig (for RTN, or for GPTQ after AWQ's scales)."""
        return GPTQConfig(self.bits, group_size or self.group_size, self.symmetric,
                          zero_point_domain=self.zero_point_domain, scale_bits=self.scale_bits)


@dataclass(frozen=True)
class ScaleGroup:
    """Layers that read the same input, and the operation before them that can absorb 1 / s."""

    previous: str  # an RMSNorm/LayerNorm (weight scaled) or a Linear (output rows scaled)
    layers: tuple[str, ...]
    inspect: str = ""  # the module whose output the block search compares ("" = the layers themselves)


# In a Llama block: the norms feed q/k/v and gate/up; up_proj's output feeds down_proj linearly (times
# silu(gate)), so down_proj's scale folds into up_proj's rows. v_proj -> o_proj is skipped: with grouped-query
# attention v_proj has fewer outputs (192 in SmolLM2) than o_proj has inputs (576).
LLAMA_SCALE_GROUPS = (
    ScaleGroup("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn"),
    ScaleGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
    ScaleGroup("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj"),
)


def activation_scale(x: torch.Tensor) -> torch.Tensor:
    """s_x: mean |x_j| of each input channel over all tokens, (in_features,)."""
    check_float_tensor(x, "x", allow_empty=True)
    if x.dim() == 0:
        raise ValueError("x must be activations (..., in_features), got a 0-dim tensor")
    if x.numel() == 0:
        raise ValueError("no calibration data: activations are empty")
    return x.detach().reshape(-1, x.shape[-1]).float().abs().mean(dim=0)


def awq_scales(x_scale: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = s_x^alpha, normalised so that sqrt(max(s) min(s)) = 1 (keeps weights and activations in range)."""
    check_float_tensor(x_scale, "x_scale")
    if (x_scale < 0).any():
        raise ValueError("x_scale holds mean |x| per channel, which cannot be negative")
    alpha = check_real(alpha, "alpha", 0, 1)
    scales = x_scale.clamp(min=1e-4).pow(alpha)
    return scales / (scales.max() * scales.min()).sqrt()


def rtn_weight(weight: torch.Tensor, config: AWQConfig) -> torch.Tensor:
    """Round-to-nearest weight (dequantized) on the config's grid; groups adapt to in_features as in lesson 04."""
    group_size = fit_group_size(weight.shape[1], config.group_size) if config.group_size else weight.shape[1]
    return rtn_quantize_weight(weight, config.gptq_config(group_size))


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


def _output(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def search_block_scale(module: nn.Module, layers: list[nn.Linear], calls: list[tuple[tuple, dict]],
                       x: torch.Tensor, config: AWQConfig) -> tuple[torch.Tensor, float, dict]:
    """llm-awq's search: argmin_alpha mean ||module(x) - module with W <- Q(W s) / s (x)||^2 over the calls.

    module: what the layers feed (attention block, MLP, or the layer itself); calls: its (args, kwargs) per
    calibration batch; x: the layers' shared input (for s_x). Returns (scales, best alpha, {alpha: error}).
    The layers' weights are restored before returning.
    """
    reference = [_output(module(*args, **kwargs)) for args, kwargs in calls]
    x_scale = activation_scale(x)
    originals = [layer.weight.detach().clone() for layer in layers]
    losses = {}
    try:
        for alpha in config.alphas:
            scales = awq_scales(x_scale, alpha)
            for layer, weight in zip(layers, originals):
                layer.weight.copy_(rtn_weight(weight.float() * scales, config) / scales)
            error, count = 0.0, 0
            for (args, kwargs), expected in zip(calls, reference):
                error += (_output(module(*args, **kwargs)) - expected).double().pow(2).sum().item()
                count += expected.numel()
            losses[alpha] = error / count
    finally:
        for layer, weight in zip(layers, originals):
            layer.weight.copy_(weight)
    best = min(losses, key=losses.get)
    return awq_scales(x_scale, best), best, losses


def _group_outputs(x: torch.Tensor, weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each group's share of each output: sum_k x[t, group, k] w[o, group, k], shape (out, tokens, groups)."""
    x = x.reshape(x.shape[0], -1, group_size)  # (tokens, groups, g)
    return torch.einsum("tgk,ogk->otg", x, weight.reshape(weight.shape[0], -1, group_size))


@torch.no_grad()
def clip_search(weight: torch.Tensor, x: torch.Tensor, config: AWQConfig, n_grid: int = 20,
                max_shrink: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """llm-awq's auto_clip: per output channel and group, the max |w| in {1, 0.95, ..., 0.55} x max|w| that
    minimises the group's output error mean_t (sum_k x_tk (w_k - Q(clip(w))_k))^2.

    Returns (max_val, error), each (out, groups); factor 1 (no clipping) is a candidate, so never worse.
    """
    group_size = fit_group_size(weight.shape[1], config.group_size) if config.group_size else weight.shape[1]
    x = _subsample(x.float(), config.clip_tokens)  # (tokens, in)
    weight = weight.detach().float()
    reference = _group_outputs(x, weight, group_size)
    grouped = weight.reshape(weight.shape[0], -1, group_size)  # (out, groups, g)
    original_max = grouped.abs().amax(dim=-1)  # (out, groups)
    best_max, best_error = original_max.clone(), torch.full_like(original_max, float("inf"))
    for step in range(int(max_shrink * n_grid)):
        max_val = original_max * (1 - step / n_grid)
        clipped = torch.maximum(torch.minimum(grouped, max_val.unsqueeze(-1)), -max_val.unsqueeze(-1))
        q = rtn_weight(clipped.reshape(weight.shape), config)
        error = (_group_outputs(x, q, group_size) - reference).pow(2).mean(dim=1)  # (out, groups)
        better = error < best_error
        best_error[better], best_max[better] = error[better], max_val[better]
    return best_max, best_error


@torch.no_grad()
def apply_clip(layer: nn.Linear, max_val: torch.Tensor) -> None:
    """Clamp each group of the weight to [-max_val, max_val] (max_val (out, groups)), in place."""
    out_features = layer.weight.shape[0]
    grouped = layer.weight.view(out_features, max_val.shape[1], -1)  # (out, groups, g)
    grouped.copy_(torch.maximum(torch.minimum(grouped, max_val.unsqueeze(-1)), -max_val.unsqueeze(-1)))


def _capture_calls(block: nn.Module, names: list[str], inputs: BlockInputs) -> dict[str, list[tuple[tuple, dict]]]:
    """The (args, kwargs) each named submodule receives, one entry per calibration batch."""
    calls: dict[str, list[tuple[tuple, dict]]] = {name: [] for name in names}
    handles = [block.get_submodule(name).register_forward_pre_hook(
        lambda m, args, kwargs, store=calls[name]: store.append((args, dict(kwargs))), with_kwargs=True)
        for name in names]
    try:
        run_block(block, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _slice_windows(value: object, count: int, batch: int) -> object:
    """The first count windows of a keyword argument that has one entry per window (dim 0 == batch)."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return value[:count]
    if isinstance(value, tuple):
        return tuple(_slice_windows(v, count, batch) for v in value)
    return value  # shared by all windows (rotary embeddings of shape (1, ...), None, flags)


def _first_tokens(inputs: BlockInputs, max_tokens: int) -> BlockInputs:
    """The first windows, in order, until at least max_tokens tokens: the batch that crosses max_tokens is cut
    to the windows needed (whole windows only: attention needs whole sequences), e.g. 512 of 4 x 512 -> 1."""
    hidden, kwargs, count = [], [], 0
    for batch_hidden, batch_kwargs in zip(inputs.hidden, inputs.kwargs):
        batch, window = batch_hidden.shape[0], batch_hidden[0, ..., 0].numel()
        needed = min(batch, -(-(max_tokens - count) // window))  # ceil: windows still needed from this batch
        hidden.append(batch_hidden[:needed])
        kwargs.append({k: _slice_windows(v, needed, batch) for k, v in batch_kwargs.items()} if needed < batch
                      else batch_kwargs)
        count += needed * window
        if count >= max_tokens:
            break
    return BlockInputs(hidden, kwargs)


def _hidden(call: tuple[tuple, dict]) -> torch.Tensor:
    """The hidden states of one captured call, as (tokens, features)."""
    args, kwargs = call
    hidden = args[0] if args else kwargs["hidden_states"]
    return hidden.reshape(-1, hidden.shape[-1])


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

    def quantize_block_llm_awq(index: int, block: nn.Module, block_inputs: BlockInputs) -> dict[str, dict]:
        search_inputs = _first_tokens(block_inputs, config.max_tokens)
        results = {}
        for group in groups:
            layers = [block.get_submodule(name) for name in group.layers]
            inspect = group.inspect or group.layers[0]
            calls = _capture_calls(block, list(dict.fromkeys([inspect, group.layers[0]])), search_inputs)
            x = torch.cat([_hidden(call) for call in calls[group.layers[0]]])
            module = block.get_submodule(inspect) if group.inspect else layers[0]
            scales, alpha, losses = search_block_scale(module, layers, calls[inspect], x, config)
            apply_scale(block.get_submodule(group.previous), layers, scales)
            results[group.layers[0]] = {"alpha": alpha, "losses": losses}
        if config.clip:
            clipped = {name: layer for name, layer in linear_layers(block).items()
                       if not name.endswith(NO_CLIP)}
            first = BlockInputs(block_inputs.hidden[:1], block_inputs.kwargs[:1])  # one batch; clip_search
            # subsamples clip_tokens of it, evenly spaced
            calls = _capture_calls(block, list(clipped), first)
            for name, layer in clipped.items():
                max_val, _ = clip_search(layer.weight, torch.cat([_hidden(c) for c in calls[name]]), config)
                full = layer.weight.detach().view(layer.weight.shape[0], max_val.shape[1], -1).abs().amax(-1)
                results.setdefault(name, {})["clipped"] = (max_val < full).float().mean().item()
                apply_clip(layer, max_val)
        if config.quantize:
            for layer in linear_layers(block).values():
                layer.weight.copy_(rtn_weight(layer.weight, config))
        return results

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
        if config.quantize:
            for layer in linear_layers(block).values():
                layer.weight.copy_(rtn_weight(layer.weight, config))
        return results

    if config.search == "block":  # llm-awq: every block sees the full-precision model's inputs
        return quantize_blocks_sequentially(blocks, inputs, quantize_block_llm_awq, progress, desc="AWQ",
                                            next_inputs="original")
    return quantize_blocks_sequentially(blocks, inputs, quantize_block, progress, desc="AWQ")


@torch.no_grad()
def awq_quantize_model(model: nn.Module, calibration_windows: torch.Tensor, config: AWQConfig = AWQConfig(),
                       batch_size: int = 4, progress: bool = False) -> dict[str, dict]:
    """AWQ on every linear layer of a Llama-style decoder LM's blocks, in place (lm_head stays).

    calibration_windows: (n, tokens) ids, disjoint from evaluation windows (the course uses windows 16..).
    """
    inputs = capture_block_inputs(model, calibration_windows, batch_size)
    return awq_quantize_blocks(decoder_blocks(model), inputs, config, progress=progress)
