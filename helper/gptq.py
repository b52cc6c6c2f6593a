"""GPTQ (Frantar et al. 2022): quantize a layer's weights column by column, pushing each error onto the rest.

Taught in 06. For a linear layer y = W x with calibration inputs X, GPTQ minimises ||W X - Q X||^2 one
column of W at a time. The Hessian of that loss is H = 2 X X^T (in x in). After rounding column j,
the error e_j = (w_j - q_j) / [H^-1]_jj is fed back into the columns not yet quantized:
w_{j+1:} -= e_j [H^-1]_{j, j+1:}, so they absorb what column j lost. Using the upper Cholesky factor of
H^-1 gives those rows directly and stays numerically stable; "lazy batches" apply the updates to
columns outside the current block of 128 once per block instead of once per column.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .layers import W2A16Linear, W4A16Linear, fit_group_size
from .layerwise import (BlockInputs, capture_block_inputs, decoder_blocks, linear_layers, quantize_blocks_sequentially,
                        run_block)
from .linear_quant import QuantizedTensor, QuantScheme, _storage_dtype, choose_qparams

__all__ = ["GPTQConfig", "GPTQResult", "HessianAccumulator", "gptq_quantize_weight", "gptq_quantize_blocks",
           "gptq_quantize_model", "gptq_pack", "weight_scheme"]


@dataclass(frozen=True)
class GPTQConfig:
    """What GPTQ produces: bits, group size (None = one scale per output row), grid, and its numerics.

    damp: fraction of mean(diag H) added to the diagonal (1 % in the paper) so H is invertible even when
    calibration data do not span every input direction. act_order: quantize columns by decreasing
    diag(H) (the inputs that carry most energy first); groups then keep their original contiguous
    columns with scales fixed from the unquantized weights ("static groups"), so the result stores like RTN.
    clip_search: shrink each group's range by the factor in [0.20, 1.00] that minimises its rounding error
    sum |w - q|^2.4, per row (the reference implementation's `Quantizer(mse=True)` tries every 0.01; we search
    coarse-to-fine, steps of 0.05 then 0.01 around the best): the extremes of a group are clipped when that
    makes the other weights' grid finer than it costs them.
    """

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False
    clip_search: bool = False

    def __post_init__(self) -> None:
        weight_scheme(self, 128)  # validates bits and grid
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {self.group_size}")
        if not 0 <= self.damp < 1:
            raise ValueError(f"damp is a fraction of the mean Hessian diagonal in [0, 1), got {self.damp}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


def weight_scheme(config: GPTQConfig, group_size: int) -> QuantScheme:
    """The per-group QuantScheme of a config, for one row of `group_size` weights (the course's W4A16 grid)."""
    if config.symmetric:
        return QuantScheme(bits=config.bits, granularity="per_group", group_size=group_size)
    return QuantScheme(bits=config.bits, symmetric=False, signed=False, granularity="per_group",
                       group_size=group_size, zero_point_domain="float")


@dataclass
class GPTQResult:
    """The quantized weight (dequantized, original column order), its codes and scales, and the GPTQ loss."""

    weight: torch.Tensor  # (out, in) float32, on the grid
    quantized: QuantizedTensor  # per-group codes + scales, storable in the course's WnA16Linear
    loss: float  # sum over columns of (w - q)^2 / [H^-1]_jj / 2: the layer's increase in output error
    order: torch.Tensor | None  # the column order used with act_order, else None


class HessianAccumulator:
    """Running H = 2/n sum_i x_i x_i^T over every calibration vector x_i that reaches a linear layer."""

    def __init__(self, in_features: int) -> None:
        self.hessian = torch.zeros(in_features, in_features)
        self.samples = 0

    def add_batch(self, x: torch.Tensor) -> None:
        """Add a batch of inputs (..., in_features)."""
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (n, in)
        if x.shape[1] != self.hessian.shape[0]:
            raise ValueError(f"inputs have {x.shape[1]} features, the layer has {self.hessian.shape[0]}")
        self.hessian += 2 * x.T @ x
        self.samples += x.shape[0]

    def result(self) -> torch.Tensor:
        """H, (in, in) float32; a clear error before any data."""
        if self.samples == 0:
            raise ValueError("no calibration data reached this layer: run calibration batches first")
        return self.hessian / self.samples


COARSE_SHRINKS = torch.arange(100, 19, -5) / 100  # 1.00, 0.95, ... 0.20: GPTQ's reference range (maxshrink 0.8)
FINE_OFFSETS = torch.arange(-4, 5) / 100  # then every 0.01 around each row's best coarse factor


def _clip_errors(columns: torch.Tensor, shrinks: torch.Tensor, scheme: QuantScheme,
                 row_scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale, zero-point (P, out, 1) and rounding error sum |w - q|^2.4 (P, out) for each shrink (P, out or 1, 1)."""
    # A row's parameters depend only on its [min, max]: scale the two ends, not the whole group.
    ends = torch.stack([columns.min(dim=1).values, columns.max(dim=1).values], dim=1)  # (out, 2)
    candidates = shrinks * ends  # (P, out, 2)
    scale, zero_point = choose_qparams(candidates.reshape(-1, 2), row_scheme)
    scale, zero_point = scale.view(*candidates.shape[:2], 1), zero_point.view(*candidates.shape[:2], 1)
    _, q = _round_column(columns, scale, zero_point.float(), scheme)  # (P, out, group)
    return scale, zero_point, (q - columns).abs_().pow_(2.4).sum(dim=2)


def _group_params(columns: torch.Tensor, scheme: QuantScheme,
                  clip_search: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point), each (out, 1), for a slice of columns (out, group); optionally MSE-clipped."""
    row_scheme = QuantScheme(bits=scheme.bits, symmetric=scheme.symmetric, granularity="per_channel", axis=0,
                             signed=scheme.signed, zero_point_domain=scheme.zero_point_domain)
    if not clip_search:
        return choose_qparams(columns, row_scheme)
    rows = torch.arange(columns.shape[0])
    _, _, error = _clip_errors(columns, COARSE_SHRINKS.view(-1, 1, 1), scheme, row_scheme)
    coarse = COARSE_SHRINKS[error.argmin(dim=0)]  # (out,); ties keep the widest range, so 1.00 if clipping never helps
    fine = (coarse + FINE_OFFSETS.view(-1, 1)).clamp(COARSE_SHRINKS.min(), 1).unsqueeze(-1)  # (9, out, 1)
    scale, zero_point, error = _clip_errors(columns, fine, scheme, row_scheme)
    best = error.argmin(dim=0)  # offset 0 (the coarse best) is a candidate: never worse than the coarse search
    return scale[best, rows], zero_point[best, rows]


def _round_column(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                  scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and dequantized values of one column w (out,), as RTN would round it with these parameters."""
    if scheme.zero_point_domain == "float":
        codes = torch.clamp(torch.round((w - zero_point) / scale), 0, scheme.qmax)
        return codes, codes * scale + zero_point
    codes = torch.clamp(torch.round(w / scale) + zero_point, scheme.qmin, scheme.qmax)
    return codes, (codes - zero_point) * scale


def _inverse_cholesky(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) I)^-1, with a clear error if H is hopeless."""
    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype)
    damped = hessian + damp * torch.diag(hessian).mean() * eye
    factor, info = torch.linalg.cholesky_ex(damped)
    if info.item() != 0:
        raise ValueError(f"the Hessian is not positive definite even with damp={damp}: increase damp "
                         "(e.g. 0.1) or use more calibration data")
    return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True)


def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig = GPTQConfig()) -> GPTQResult:
    """Quantize weight (out, in) given H (in, in): round column by column with error feedback (Algorithm 1)."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    out_features, in_features = weight.shape
    if hessian.shape != (in_features, in_features):
        raise ValueError(f"the Hessian must be ({in_features}, {in_features}) for this weight, "
                         f"got {tuple(hessian.shape)}")
    if not (torch.isfinite(weight).all() and torch.isfinite(hessian).all()):
        raise ValueError("weight or Hessian contains NaN or Inf")
    group_size = config.group_size or in_features
    if in_features % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {in_features}")
    scheme = weight_scheme(config, group_size)
    W = weight.detach().float().clone()
    H = hessian.detach().float().clone()
    dead = torch.diag(H) == 0  # inputs that never fire: any value works, zero is cheapest
    H[dead, dead] = 1
    W[:, dead] = 0

    static = None
    order = None
    if config.act_order or config.group_size is None:
        # Per-row scales (no groups) come from the whole unquantized row, as in the paper. With act_order,
        # groups keep their original contiguous columns so the result stores like RTN; their scales come
        # from the unquantized weight because the quantization order crosses groups ("static groups").
        groups = W.reshape(out_features, -1, group_size).transpose(0, 1)  # (groups, out, g)
        static = [_group_params(g, scheme, config.clip_search) for g in groups]
    if config.act_order:
        order = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, order], H[order][:, order]
    Hinv = _inverse_cholesky(H, config.damp)

    codes = torch.zeros_like(W)
    Q = torch.zeros_like(W)
    scales = torch.zeros(out_features, in_features // group_size)
    zero_points = torch.zeros(out_features, in_features // group_size)
    loss = torch.zeros(out_features)
    # Blocks hold whole groups, so a group's scale is chosen from fully updated weights.
    block = group_size * max(1, config.block_size // group_size) if config.group_size else config.block_size
    groups_of = (torch.arange(in_features) if order is None else order) // group_size  # group of each column
    groups_of = groups_of.tolist()
    if static is not None:
        for group, (scale, zero_point) in enumerate(static):
            scales[:, group], zero_points[:, group] = scale[:, 0], zero_point[:, 0].float()
        params = [(scale[:, 0], zero_point[:, 0].float()) for scale, zero_point in static]
    for i1 in range(0, in_features, block):
        i2 = min(i1 + block, in_features)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        diagonal = torch.diag(Hinv1).tolist()
        for i in range(i2 - i1):
            column = i1 + i
            group = groups_of[column]
            if static is None and column % group_size == 0:
                scale, zero_point = _group_params(W1[:, i:i + group_size], scheme, config.clip_search)
                scales[:, group], zero_points[:, group] = scale[:, 0], zero_point[:, 0].float()
                current = (scale[:, 0], zero_point[:, 0].float())
            q_codes, q = _round_column(W1[:, i], *(params[group] if static is not None else current), scheme)
            codes[:, column], Q[:, column] = q_codes, q
            error = (W1[:, i] - q) / diagonal[i]
            W1[:, i:].sub_(torch.outer(error, Hinv1[i, i:]))  # feed the error forward in the block
            Err1[:, i] = error
        loss += Err1.pow(2).sum(dim=1) / 2  # (w - q)^2 / [H^-1]_jj^2 / 2, summed over the block's columns
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy batch update of every later column

    if order is not None:
        inverse = torch.argsort(order)
        Q, codes = Q[:, inverse], codes[:, inverse]
    float_offsets = scheme.zero_point_domain == "float"
    storage = QuantizedTensor(
        data=codes.reshape(-1, group_size).to(_storage_dtype(scheme.bits, scheme.signed)),  # (out*in/g, g)
        scale=scales.reshape(-1, 1),
        zero_point=zero_points.reshape(-1, 1) if float_offsets else zero_points.reshape(-1, 1).to(torch.int32),
        shape=weight.shape, scheme=scheme)
    return GPTQResult(weight=Q.to(weight.dtype), quantized=storage, loss=loss.sum().item(), order=order)


def gptq_quantize_blocks(blocks: list[nn.Module] | nn.ModuleList, inputs: BlockInputs, config: GPTQConfig = GPTQConfig(),
                         exclude: tuple[str, ...] = (), progress: bool = False) -> dict[str, GPTQResult]:
    """Sequential GPTQ: each block's linear layers get Hessians from inputs that passed the quantized blocks before.

    Weights are replaced in place by their quantized values (a simulation of the stored model: outputs are
    what a W{bits}A16 layer with these codes computes); results hold the codes and scales.
    """

    def quantize_block(index: int, block: nn.Module, block_inputs: BlockInputs) -> dict[str, GPTQResult]:
        layers = linear_layers(block, exclude)
        accumulators = {name: HessianAccumulator(layer.in_features) for name, layer in layers.items()}
        handles = [layer.register_forward_hook(lambda m, args, out, a=accumulators[name]: a.add_batch(args[0]))
                   for name, layer in layers.items()]
        try:
            run_block(block, block_inputs)
        finally:
            for handle in handles:
                handle.remove()
        results = {}
        for name, layer in layers.items():
            size = _fit_group(layer.in_features, config.group_size)
            layer_config = dataclasses.replace(config, group_size=size)
            result = gptq_quantize_weight(layer.weight, accumulators[name].result(), layer_config)
            with torch.no_grad():
                layer.weight.copy_(result.weight)
            results[name] = result
        return results

    return quantize_blocks_sequentially(blocks, inputs, quantize_block, progress, desc="GPTQ")


def _fit_group(in_features: int, group_size: int | None) -> int | None:
    """Group sizes adapt to layers they do not divide (SmolLM2's 576 inputs get 96, as quanto and lesson 04 do)."""
    return None if group_size is None else fit_group_size(in_features, group_size)


@torch.no_grad()
def gptq_quantize_model(model: nn.Module, calibration_windows: torch.Tensor, config: GPTQConfig = GPTQConfig(),
                        batch_size: int = 4, progress: bool = False) -> dict[str, GPTQResult]:
    """GPTQ on every linear layer of a decoder LM's blocks (lm_head and embeddings stay), in place.

    calibration_windows: (n, tokens) ids, disjoint from evaluation windows (the course uses windows 16..).
    """
    inputs = capture_block_inputs(model, calibration_windows, batch_size)
    return gptq_quantize_blocks(decoder_blocks(model), inputs, config, progress=progress)


def gptq_pack(model: nn.Module, results: dict[str, GPTQResult], blocks: nn.ModuleList | None = None) -> nn.Module:
    """Swap each GPTQ-quantized nn.Linear for a packed W4A16Linear / W2A16Linear holding its codes, in place.

    Outputs are unchanged (the layers compute with the same dequantized weights); storage becomes real.
    """
    blocks = decoder_blocks(model) if blocks is None else blocks
    classes = {4: W4A16Linear, 2: W2A16Linear}
    for key, result in results.items():
        bits = result.quantized.scheme.bits
        if bits not in classes:
            raise ValueError(f"packed layers exist for 2 and 4 bits, not {bits}: keep the simulated weights")
        _, index, name = key.split(".", 2)
        block = blocks[int(index)]
        linear = block.get_submodule(name)
        parent, _, child = name.rpartition(".")
        setattr(block.get_submodule(parent) if parent else block, child,
                classes[bits].from_quantized(result.quantized, linear.bias, linear.weight.dtype))
    return model
