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
from .packing import pack
from .threads import one_thread
from .validation import check_bool, check_float_tensor, check_int_in_range

__all__ = ["GPTQConfig", "GPTQResult", "HessianAccumulator", "gptq_quantize_weight", "gptq_quantize_blocks",
           "gptq_quantize_model", "gptq_pack", "weight_scheme", "rtn_quantize_weight", "checkpoint_tensors",
           "sequential_stages", "gptq_column_step"]


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
    zero_point_domain (asymmetric grids): "int" stores an integer zero-point per group, x = (q - z) * scale, as
    GPTQ/AWQ checkpoints do (packed at the code width); "float" a float minimum, x = q * scale + min (the
    course's "scale+min", GGUF Q4_1). scale_bits: 16 rounds scales (and minimums) to fp16, as checkpoints store
    them; 32 keeps fp32. true_sequential: within a block, quantize the layers stage by stage (q/k/v, then o,
    then gate/up, then down), each stage's Hessians from inputs that passed the stages already quantized.
    """

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False
    clip_search: bool = False
    zero_point_domain: str = "float"
    scale_bits: int = 32
    true_sequential: bool = False

    def __post_init__(self) -> None:
        for flag in ("symmetric", "act_order", "clip_search", "true_sequential"):
            check_bool(getattr(self, flag), flag)  # act_order="False" must not turn act-order on
        if self.zero_point_domain not in ("int", "float"):
            raise ValueError(f"zero_point_domain must be 'int' or 'float', got {self.zero_point_domain!r}")
        if self.scale_bits not in (16, 32):
            raise ValueError(f"scale_bits must be 16 (fp16 scales, as checkpoints) or 32, got {self.scale_bits}")
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
                       group_size=group_size, zero_point_domain=config.zero_point_domain)


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
        in_features = check_int_in_range(in_features, "in_features", 1, 1 << 14)  # H is in^2 floats: 1 GB at most
        self.hessian = torch.zeros(in_features, in_features)
        self.samples = 0

    def add_batch(self, x: torch.Tensor) -> None:
        """Add a batch of inputs (..., in_features)."""
        check_float_tensor(x, "x")  # one NaN would make all of H NaN
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


def _to_scale_dtype(params: tuple[torch.Tensor, torch.Tensor], scheme: QuantScheme,
                    scale_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round scales (and float minimums) to fp16 when the checkpoint stores them so; integer zero-points stay."""
    if scale_bits == 32:
        return params
    scale, zero_point = params
    scale = scale.half().float()
    if scheme.zero_point_domain == "float":
        zero_point = zero_point.half().float()
    return scale, zero_point


def _group_params(columns: torch.Tensor, scheme: QuantScheme, clip_search: bool = False,
                  scale_bits: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point), each (out, 1), for a slice of columns (out, group); optionally MSE-clipped."""
    row_scheme = QuantScheme(bits=scheme.bits, symmetric=scheme.symmetric, granularity="per_channel", axis=0,
                             signed=scheme.signed, zero_point_domain=scheme.zero_point_domain)
    if not clip_search:
        return _to_scale_dtype(choose_qparams(columns, row_scheme), scheme, scale_bits)
    rows = torch.arange(columns.shape[0])
    _, _, error = _clip_errors(columns, COARSE_SHRINKS.view(-1, 1, 1), scheme, row_scheme)
    coarse = COARSE_SHRINKS[error.argmin(dim=0)]  # (out,); ties keep the widest range, so 1.00 if clipping never helps
    fine = (coarse + FINE_OFFSETS.view(-1, 1)).clamp(COARSE_SHRINKS.min(), 1).unsqueeze(-1)  # (9, out, 1)
    scale, zero_point, error = _clip_errors(columns, fine, scheme, row_scheme)
    best = error.argmin(dim=0)  # offset 0 (the coarse best) is a candidate: never worse than the coarse search
    return _to_scale_dtype((scale[best, rows], zero_point[best, rows]), scheme, scale_bits)


def _round_column(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                  scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and dequantized values of one column w (out,), as RTN would round it with these parameters."""
    if scheme.zero_point_domain == "float":
        codes = torch.clamp(torch.round((w - zero_point) / scale), 0, scheme.qmax)
        return codes, codes * scale + zero_point
    codes = torch.clamp(torch.round(w / scale) + zero_point, scheme.qmin, scheme.qmax)
    return codes, (codes - zero_point) * scale


def gptq_column_step(W: torch.Tensor, Hinv: torch.Tensor, j: int, scale: torch.Tensor, zero_point: torch.Tensor,
                     scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Algorithm 1, in place on W (out, n): quantize column j, e = (w_j - q_j) / Hinv[j, j],
    W[:, j:] -= e Hinv[j, j:] (Hinv: upper Cholesky factor of H^-1). Column j ends equal to q_j.

    Returns (codes, q_j, e), each (out,). Lesson 06's exercise asks for this step.
    """
    codes, q = _round_column(W[:, j], scale, zero_point, scheme)  # 1. quantize column j
    error = (W[:, j] - q) / Hinv[j, j]  # 2. its error, scaled by the inverse Hessian's diagonal
    W[:, j:].sub_(torch.outer(error, Hinv[j, j:]))  # 3. feed it to column j (which becomes q) and later ones
    return codes, q, error


def _inverse_cholesky(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) I)^-1, with a clear error if H is hopeless."""
    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype)
    damped = hessian + damp * torch.diag(hessian).mean() * eye
    factor, info = torch.linalg.cholesky_ex(damped)
    if info.item() != 0:
        raise ValueError(f"the Hessian is not positive definite even with damp={damp}: increase damp "
                         "(e.g. 0.1) or use more calibration data")
    return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True)


def _quantize_columns(W: torch.Tensor, Hinv: torch.Tensor, codes: torch.Tensor, Q: torch.Tensor, loss: torch.Tensor,
                      block: int, groups_of: list[int], group_size: int, scheme: QuantScheme, config: GPTQConfig,
                      scales: torch.Tensor, zero_points: torch.Tensor,
                      params: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
    """Algorithm 1's column loop with lazy batch updates, filling codes, Q, loss (and dynamic group scales)."""
    in_features = W.shape[1]
    for i1 in range(0, in_features, block):
        i2 = min(i1 + block, in_features)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            column = i1 + i
            group = groups_of[column]
            if params is None and column % group_size == 0:
                scale, zero_point = _group_params(W1[:, i:i + group_size], scheme, config.clip_search,
                                                  config.scale_bits)
                scales[:, group], zero_points[:, group] = scale[:, 0], zero_point[:, 0].float()
                current = (scale[:, 0], zero_point[:, 0].float())
            q_codes, q, error = gptq_column_step(W1, Hinv1, i, *(params[group] if params is not None else current),
                                                 scheme)  # feeds the error forward in the block
            codes[:, column], Q[:, column] = q_codes, q
            Err1[:, i] = error
        loss += Err1.pow(2).sum(dim=1) / 2  # (w - q)^2 / [H^-1]_jj^2 / 2, summed over the block's columns
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy batch update of every later column


def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig = GPTQConfig()) -> GPTQResult:
    """Quantize weight (out, in) given H (in, in): round column by column with error feedback (Algorithm 1)."""
    # One intra-op thread: thousands of tiny column ops and a <= 1536 x 1536 cholesky_inverse gain nothing from a
    # second thread and, on 2 shared cores, lose 5-50x waiting for it (measured: cholesky_inverse 7.4 s vs 0.15 s).
    with one_thread():
        return _gptq_quantize_weight(weight, hessian, config)


def _gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig) -> GPTQResult:
    """gptq_quantize_weight's body, run on one thread."""
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
        static = [_group_params(g, scheme, config.clip_search, config.scale_bits) for g in groups]
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
    _quantize_columns(W, Hinv, codes, Q, loss, block, groups_of, group_size, scheme, config, scales, zero_points,
                      params if static is not None else None)

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


def rtn_quantize_weight(weight: torch.Tensor, config: GPTQConfig = GPTQConfig()) -> torch.Tensor:
    """Round to nearest on exactly GPTQ's grid (same group parameters, range search, scale precision), dequantized.

    The equal-format baseline: GPTQ with every error-feedback step removed.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    group_size = config.group_size or weight.shape[1]
    if weight.shape[1] % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {weight.shape[1]}")
    scheme = weight_scheme(config, group_size)
    rows = weight.detach().float().reshape(-1, group_size)  # (out * in / g, g)
    scale, zero_point = _group_params(rows, scheme, config.clip_search, config.scale_bits)
    _, q = _round_column(rows, scale, zero_point.float(), scheme)
    return q.reshape(weight.shape).to(weight.dtype)


def checkpoint_tensors(quantized: QuantizedTensor) -> dict[str, torch.Tensor]:
    """The tensors a GPTQ/AWQ checkpoint stores for one layer: packed codes, fp16 scales, packed zero-points.

    As compressed-tensors' pack-quantized format: codes unsigned (code - qmin) packed 8 // bits per byte,
    scales (out, groups) fp16, and for an integer-zero-point grid the zero-points packed at the code width.
    A float-minimum grid stores its minimums in fp16 instead.
    """
    scheme = quantized.scheme
    if scheme.granularity != "per_group" or len(quantized.shape) != 2:
        raise ValueError(f"checkpoint_tensors packs 2-D per-group tensors, got {scheme.granularity} "
                         f"of shape {tuple(quantized.shape)}")
    out_features = quantized.shape[0]
    codes = quantized.codes().to(torch.int32) - scheme.qmin  # (out, in), 0..2^b - 1
    tensors = {"weight_packed": pack(codes, scheme.bits),
               "weight_scale": quantized.scale.reshape(out_features, -1).half()}
    if not scheme.symmetric:
        zero_point = quantized.zero_point.reshape(out_features, -1)  # (out, groups)
        tensors.update({"weight_zero_point": pack(zero_point.to(torch.int32) - scheme.qmin, scheme.bits)}
                       if scheme.zero_point_domain == "int" else {"weight_minimum": zero_point.half()})
    return tensors


def sequential_stages(block: nn.Module, inputs: BlockInputs, names: list[str]) -> list[list[str]]:
    """The block's linear layers in the order they run, those reading the same input tensor in one stage.

    For a Llama block: [q, k, v], [o], [gate, up], [down], the stages of GPTQ's "true sequential" option.
    """
    seen: list[tuple[str, int]] = []
    handles = [block.get_submodule(name).register_forward_hook(
        lambda m, args, out, name=name: seen.append((name, args[0].data_ptr()))) for name in names]
    try:
        run_block(block, BlockInputs(inputs.hidden[:1], inputs.kwargs[:1]))
    finally:
        for handle in handles:
            handle.remove()
    stages: list[list[str]] = []
    last = None
    for name, pointer in seen:
        if stages and pointer == last:
            stages[-1].append(name)
        else:
            stages.append([name])
        last = pointer
    return stages


def _hessians(block: nn.Module, layers: dict[str, nn.Linear], inputs: BlockInputs) -> dict[str, torch.Tensor]:
    """H of each named layer over every calibration batch, with the block as it is now."""
    accumulators = {name: HessianAccumulator(layer.in_features) for name, layer in layers.items()}
    handles = [layer.register_forward_hook(lambda m, args, out, a=accumulators[name]: a.add_batch(args[0]))
               for name, layer in layers.items()]
    try:
        run_block(block, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: accumulator.result() for name, accumulator in accumulators.items()}


def gptq_quantize_blocks(blocks: list[nn.Module] | nn.ModuleList, inputs: BlockInputs, config: GPTQConfig = GPTQConfig(),
                         exclude: tuple[str, ...] = (), progress: bool = False,
                         layer_configs: dict[str, GPTQConfig] | None = None) -> dict[str, GPTQResult]:
    """Sequential GPTQ: each block's linear layers get Hessians from inputs that passed the quantized blocks before.

    Weights are replaced in place by their quantized values (a simulation of the stored model: outputs are
    what a W{bits}A16 layer with these codes computes); results hold the codes and scales.
    layer_configs: a different config for some layers, keyed like the results ("blocks.11.mlp.down_proj"),
    e.g. 8 bits for the layers mixed precision protects.
    """
    layer_configs = layer_configs or {}

    def quantize_block(index: int, block: nn.Module, block_inputs: BlockInputs) -> dict[str, GPTQResult]:
        layers = linear_layers(block, exclude)
        stages = sequential_stages(block, block_inputs, list(layers)) if config.true_sequential else [list(layers)]
        results = {}
        for stage in stages:
            hessians = _hessians(block, {name: layers[name] for name in stage}, block_inputs)
            for name in stage:
                layer = layers[name]
                chosen = layer_configs.get(f"blocks.{index}.{name}", config)
                layer_config = dataclasses.replace(chosen, group_size=_fit_group(layer.in_features,
                                                                                  chosen.group_size))
                result = gptq_quantize_weight(layer.weight, hessians[name], layer_config)
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
                        batch_size: int = 4, progress: bool = False,
                        layer_configs: dict[str, GPTQConfig] | None = None) -> dict[str, GPTQResult]:
    """GPTQ on every linear layer of a decoder LM's blocks (lm_head and embeddings stay), in place.

    calibration_windows: (n, tokens) ids, disjoint from evaluation windows (the course uses windows 16..).
    """
    inputs = capture_block_inputs(model, calibration_windows, batch_size)
    return gptq_quantize_blocks(decoder_blocks(model), inputs, config, progress=progress, layer_configs=layer_configs)


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
