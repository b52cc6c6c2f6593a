"""QAT on an LLM: fake-quantized int4 weights, distillation from the fp32 model, learned step sizes. Taught in 07.

Every linear layer of the decoder blocks becomes a QATLinear: its latent fp32 weight is rounded on every
forward to an int4 grid with one scale and one integer zero-point per group (the GPTQ/AWQ checkpoint format
of lesson 06: 4 + (16 + 4) / 128 bits per weight), through the straight-through estimator of lesson 03.
The scale is a parameter too (LSQ, Esser et al. 2020), kept as log(scale) so Adam's steps are relative.
The student learns to match the fp32 teacher's next-token distributions (KL), on calibration windows that
are disjoint from the evaluation windows, so what it gains is recovery from rounding, not new knowledge.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .gptq import GPTQConfig, GPTQResult, _group_params, weight_scheme
from .layers import fit_group_size
from .layerwise import BlockInputs, capture_block_inputs, decoder_blocks, run_block
from .sizes import weight_storage_bits
from .validation import InputTypeError, check_bool, check_int_in_range, check_positive

__all__ = ["QAT_CONFIG", "round_ste", "lsq_fake_quantize", "QATLinear", "to_qat", "qat_layers", "qat_parameters",
           "distillation_loss", "train_distilled", "learn_scales_blockwise", "freeze_qat", "qat_bits_per_weight",
           "code_changes", "stored_weights"]

QAT_CONFIG = GPTQConfig(bits=4, group_size=128, symmetric=False, zero_point_domain="int", scale_bits=16)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (the straight-through estimator of lesson 03)."""
    return x + (torch.round(x) - x).detach()


def lsq_fake_quantize(weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
                      qmax: int) -> torch.Tensor:
    """w_hat = (clamp(round_ste(w / s) + z, qmin, qmax) - z) * s per group; weight (out, groups, g), s, z (out, groups, 1).

    d w_hat / d w = 1 inside the grid, 0 where clamped; d w_hat / d s = round(w/s) - w/s inside, (q - z) outside
    (LSQ's step-size gradient, which it gets for free from the STE). Computed by a custom backward that saves
    only w, s and z (the zero-point gets no gradient), so training 210 layers does not keep four weight-sized
    intermediates each.
    """
    return _LSQFakeQuantize.apply(weight, scale, zero_point, qmin, qmax)


def _fake_quantized(weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
                    qmax: int) -> torch.Tensor:
    """w_hat = (clamp(round(w/s) + z, qmin, qmax) - z) * s per group, no autograd: the forward of both Functions."""
    # clamp(round(w/s) + z, qmin, qmax) - z = clamp(round(w/s), qmin - z, qmax - z) exactly (small integers)
    return torch.round(weight / scale).clamp_(qmin - zero_point, qmax - zero_point).mul_(scale)


class _LSQFakeQuantize(torch.autograd.Function):
    """The same w_hat and STE/LSQ gradients as autograd through round_ste, saving only w, s and z.

    Autograd through the formula keeps four weight-sized intermediates per layer for the backward (about 2 GB
    for SmolLM2's 210 layers); this recomputes them in the backward instead. zero_point gets no gradient.
    """

    @staticmethod
    def forward(ctx, weight, scale, zero_point, qmin, qmax):
        ctx.save_for_backward(weight, scale, zero_point)
        ctx.qmin, ctx.qmax = qmin, qmax
        return _fake_quantized(weight, scale, zero_point, qmin, qmax)

    @staticmethod
    def backward(ctx, grad):
        weight, scale, zero_point = ctx.saved_tensors
        grad_weight, grad_scale = _lsq_backward(grad, weight, scale, zero_point, ctx.qmin, ctx.qmax,
                                                ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_weight, grad_scale, None, None, None


def _lsq_backward(grad, weight, scale, zero_point, qmin, qmax, need_weight, need_scale):
    """(d loss / d w, d loss / d s) from d loss / d w_hat: the STE inside the grid, LSQ's step-size gradient."""
    ratio = weight / scale
    steps = torch.round(ratio)
    low, high = qmin - zero_point, qmax - zero_point
    inside = (steps >= low) & (steps <= high)
    grad_weight = grad_scale = None
    if need_weight:
        grad_weight = (grad * inside).sum_to_size(weight.shape)
    if need_scale:
        # d w_hat / d s: round(w/s) - w/s inside the grid, q - z where clamped
        local = torch.where(inside, steps.sub(ratio), steps.clamp(low, high))
        grad_scale = (grad * local).sum_to_size(scale.shape)
    return grad_weight, grad_scale


class _QATLinearFunction(torch.autograd.Function):
    """y = x w_hat^T + b with w_hat = lsq_fake_quantize(w): w_hat is recomputed in the backward, not kept.

    F.linear on a fake-quantized weight keeps w_hat for the backward (about 430 MB for SmolLM2's 210 layers);
    this keeps only x, w, s and z. Gradients reach x, the latent weight and the scale; bias and z get none.
    """

    @staticmethod
    def forward(ctx, x, weight, scale, zero_point, bias, qmin, qmax):
        ctx.save_for_backward(x, weight, scale, zero_point)
        ctx.qmin, ctx.qmax = qmin, qmax
        w_hat = _fake_quantized(weight, scale, zero_point, qmin, qmax)
        return F.linear(x, w_hat.reshape(weight.shape[0], -1), bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, scale, zero_point = ctx.saved_tensors
        out_features = weight.shape[0]
        w_hat = _fake_quantized(weight, scale, zero_point, ctx.qmin, ctx.qmax).reshape(out_features, -1)
        grad_x = grad_output @ w_hat if ctx.needs_input_grad[0] else None
        grad_weight = grad_scale = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w_hat = grad_output.reshape(-1, out_features).t() @ x.reshape(-1, x.shape[-1])  # (out, in)
            grad_weight, grad_scale = _lsq_backward(grad_w_hat.reshape(weight.shape), weight, scale, zero_point,
                                                    ctx.qmin, ctx.qmax, ctx.needs_input_grad[1],
                                                    ctx.needs_input_grad[2])
        return grad_x, grad_weight, grad_scale, None, None, None, None


class QATLinear(nn.Module):
    """A linear layer trained through int4 rounding: latent weight and log(scale) learn, zero-points are fixed."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                 bias: torch.Tensor | None = None, bits: int = 4, train_weight: bool = True,
                 train_scale: bool = True) -> None:
        super().__init__()
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D (out, in) tensor, got {getattr(weight, 'shape', weight)}")
        out_features, in_features = weight.shape
        if scale.dim() != 2 or scale.shape[0] != out_features or in_features % scale.shape[1]:
            raise ValueError(f"scale must be (out, groups) with groups dividing {in_features}, "
                             f"got {tuple(scale.shape)}")
        if zero_point.shape != scale.shape:
            raise ValueError(f"zero_point must have the scale's shape {tuple(scale.shape)}, got {tuple(zero_point.shape)}")
        if not (scale > 0).all():
            raise ValueError("every scale must be > 0")
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.group_size = in_features // scale.shape[1]
        self.qmin, self.qmax = 0, 2 ** bits - 1
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=check_bool(train_weight, "train_weight"))
        self.log_scale = nn.Parameter(scale.detach().float().log(), requires_grad=check_bool(train_scale, "train_scale"))
        self.register_buffer("zero_point", zero_point.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.storage = False  # True: compute with the stored weight (fp16 scales), as freeze_qat would

    def quantized_weight(self, storage: bool = False) -> torch.Tensor:
        """The weight the layer computes with (out, in); storage=True rounds the scales to fp16 as stored."""
        scale = self.log_scale.exp()
        if storage:
            scale = scale.half().float()
        grouped = self.weight.reshape(self.out_features, -1, self.group_size)  # (out, groups, g)
        w_hat = lsq_fake_quantize(grouped, scale.unsqueeze(-1), self.zero_point.unsqueeze(-1), self.qmin, self.qmax)
        return w_hat.reshape(self.out_features, self.in_features)

    def codes(self) -> torch.Tensor:
        """The integer codes 0..2^bits - 1 the layer would store, (out, in), with fp16 scales."""
        with torch.no_grad():
            scale = self.log_scale.exp().half().float().unsqueeze(-1)
            grouped = self.weight.reshape(self.out_features, -1, self.group_size)
            codes = torch.clamp(torch.round(grouped / scale) + self.zero_point.unsqueeze(-1), self.qmin, self.qmax)
        return codes.reshape(self.out_features, self.in_features).to(torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear with the fake-quantized weight (gradients reach the latent weight and the scales)."""
        if not torch.is_grad_enabled():
            return F.linear(x, self.quantized_weight(self.storage), self.bias)
        scale = self.log_scale.exp()
        if self.storage:
            scale = scale.half().float()
        grouped = self.weight.reshape(self.out_features, -1, self.group_size)  # (out, groups, g)
        return _QATLinearFunction.apply(x, grouped, scale.unsqueeze(-1), self.zero_point.unsqueeze(-1), self.bias,
                                        self.qmin, self.qmax)

    def storage_bits(self) -> float:
        """Bits per weight of the stored layer: 4-bit codes, an fp16 scale and a 4-bit zero-point per group."""
        return weight_storage_bits(self.bits, self.group_size, symmetric=False, zero_point_domain="int")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, g={self.group_size}"


def _rtn_params(weight: torch.Tensor, config: GPTQConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point), each (out, groups): min-max per group, fp16 scales, integer zero-points."""
    group_size = fit_group_size(weight.shape[1], config.group_size)
    rows = weight.detach().float().reshape(-1, group_size)  # (out * groups, g)
    scale, zero_point = _group_params(rows, weight_scheme(config, group_size), False, config.scale_bits)
    return scale.reshape(weight.shape[0], -1), zero_point.float().reshape(weight.shape[0], -1)


def to_qat(model: nn.Module, gptq_results: dict[str, GPTQResult] | None = None, config: GPTQConfig = QAT_CONFIG,
           train_weight: bool = True, train_scale: bool = True) -> nn.Module:
    """A copy of model whose block linears are QATLinear layers, started from RTN or from a GPTQ solution.

    gptq_results: gptq_quantize_model's results (keys "blocks.{i}.{name}", asymmetric integer zero-point grid)
    to start from GPTQ's codes and scales; None starts from round-to-nearest with min-max scales.
    Everything else (embeddings, norms, lm_head) is frozen.
    """
    if config.symmetric or config.zero_point_domain != "int":
        raise ValueError("QAT here uses the checkpoint grid: asymmetric, integer zero-points (QAT_CONFIG)")
    originals = [{n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
                 for block in decoder_blocks(model)]
    # the copy gets empty placeholders for the weights QATLinear replaces: no second fp32 copy of them is made
    memo = {id(linear.weight): nn.Parameter(torch.empty(0), requires_grad=False)
            for linears in originals for linear in linears.values()}
    model = copy.deepcopy(model, memo)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for index, block in enumerate(decoder_blocks(model)):
        for name, linear in [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]:
            if gptq_results is None:
                weight = originals[index][name].weight
                scale, zero_point = _rtn_params(weight, config)
            else:
                key = f"blocks.{index}.{name}"
                if key not in gptq_results:
                    raise ValueError(f"gptq_results has no entry {key!r}")
                result = gptq_results[key]
                scheme = result.quantized.scheme
                if scheme.symmetric or scheme.zero_point_domain != "int":
                    raise ValueError(f"{key}: GPTQ results must use the asymmetric integer zero-point grid")
                weight = result.weight
                scale = result.quantized.scale.reshape(weight.shape[0], -1)
                zero_point = result.quantized.zero_point.float().reshape(weight.shape[0], -1)
            layer = QATLinear(weight, scale, zero_point, linear.bias, config.bits, train_weight, train_scale)
            parent_name, _, child = name.rpartition(".")
            setattr(block.get_submodule(parent_name) if parent_name else block, child, layer)
    return model


@contextmanager
def stored_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every QATLinear computes with its stored weight (codes x fp16 scales): no copy needed."""
    layers = qat_layers(model)
    if not layers:
        raise ValueError("the model has no QATLinear layers")
    for layer in layers.values():
        layer.storage = True
    try:
        with torch.no_grad():
            yield model
    finally:
        for layer in layers.values():
            layer.storage = False


def qat_layers(model: nn.Module) -> dict[str, QATLinear]:
    """The QATLinear layers of a model, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QATLinear)}


def qat_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters, with a clear error when there are none."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters: nothing would train")
    return parameters


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) of next-token distributions, in nats."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    vocab = student_logits.shape[-1]
    log_q = F.log_softmax(student_logits.float().reshape(-1, vocab), dim=-1)
    log_p = F.log_softmax(teacher_logits.float().reshape(-1, vocab), dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def train_distilled(student: nn.Module, teacher: nn.Module, windows: torch.Tensor, steps: int, lr: float = 1e-5,
                    scale_lr: float = 1e-3, batch_size: int = 2, evaluate=None, eval_every: int = 0,
                    progress: bool = False) -> dict[str, list]:
    """Adam on KL(teacher || student) over calibration windows, cycled in order; returns the loss curve.

    lr for latent weights, scale_lr for log(scale) parameters. evaluate(student) -> float is called at step 0
    and every eval_every steps (and at the end), giving (step, value) pairs.
    """
    steps = check_int_in_range(steps, "steps", 1)
    batch_size = check_int_in_range(batch_size, "batch_size", 1)
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2:
        raise ValueError(f"windows must be (n, tokens) token ids, got {getattr(windows, 'shape', windows)}")
    parameters = qat_parameters(student)
    scales = [p for n, p in student.named_parameters() if p.requires_grad and n.endswith("log_scale")]
    others = [p for p in parameters if not any(p is s for s in scales)]
    groups = ([{"params": others, "lr": check_positive(lr, "lr")}] if others else []) + \
             ([{"params": scales, "lr": check_positive(scale_lr, "scale_lr")}] if scales else [])
    optimizer = torch.optim.Adam(groups, foreach=False)  # per tensor: no model-sized temporaries in the step
    history: dict[str, list] = {"loss": [], "eval": []}
    if evaluate is not None:
        history["eval"].append((0, evaluate(student)))
    teacher.eval()
    student.train()
    for step in tqdm(range(steps), desc="distil", disable=not progress, leave=False):
        start = (step * batch_size) % windows.shape[0]
        batch = windows[start:start + batch_size]
        with torch.no_grad():
            target = teacher(input_ids=batch).logits
        loss = distillation_loss(student(input_ids=batch).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
        if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            student.eval()
            history["eval"].append((step + 1, evaluate(student)))
            student.train()
    student.eval()
    student.zero_grad(set_to_none=True)  # the gradients (as large as the trained weights) are not needed after
    return history


def learn_scales_blockwise(student: nn.Module, teacher: nn.Module, windows: torch.Tensor, steps: int = 20,
                           lr: float = 5e-3, batch_size: int = 4, progress: bool = False) -> list[list[float]]:
    """LSQ / OmniQuant-style: per block, train only the QAT scales so the block's output matches the fp32 block's.

    Block k of the student reads what the student's blocks 0..k-1 produce; its target is the teacher's block k
    on the teacher's own inputs, so each block also makes up for the errors before it. Latent weights stay
    fixed; changing a scale moves the codes. Returns each block's loss curve (MSE of hidden states).
    """
    steps = check_int_in_range(steps, "steps", 1)
    check_positive(lr, "lr")
    student_blocks, teacher_blocks = decoder_blocks(student), decoder_blocks(teacher)
    if len(student_blocks) != len(teacher_blocks):
        raise ValueError("student and teacher have different numbers of blocks")
    student_inputs = capture_block_inputs(student, windows, batch_size)
    teacher_inputs = capture_block_inputs(teacher, windows, batch_size)
    curves = []
    for block, reference in tqdm(list(zip(student_blocks, teacher_blocks)), desc="scales", disable=not progress,
                                 leave=False):
        targets = run_block(reference, teacher_inputs)
        scales = [layer.log_scale for layer in block.modules() if isinstance(layer, QATLinear)]
        if not scales:
            raise ValueError("the student's blocks hold no QATLinear layers: call to_qat first")
        trainable = [(p, p.requires_grad) for p in block.parameters()]
        for parameter in block.parameters():
            parameter.requires_grad_(False)
        for scale in scales:
            scale.requires_grad_(True)
        optimizer = torch.optim.Adam(scales, lr=lr)
        curve = []
        for step in range(steps):
            index = step % len(student_inputs.hidden)
            out = block(student_inputs.hidden[index], **student_inputs.kwargs[index])
            out = out[0] if isinstance(out, tuple) else out
            loss = F.mse_loss(out, targets.hidden[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        for parameter, flag in trainable:
            parameter.requires_grad_(flag)
        curves.append(curve)
        student_inputs, teacher_inputs = run_block(block, student_inputs), targets
    return curves


@torch.no_grad()
def freeze_qat(model: nn.Module) -> nn.Module:
    """A copy with every QATLinear replaced by an nn.Linear holding its stored weight (codes x fp16 scales)."""
    model = copy.deepcopy(model)
    layers = qat_layers(model)
    if not layers:
        raise ValueError("the model has no QATLinear layers")
    for name, layer in layers.items():
        linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        linear.weight.copy_(layer.quantized_weight(storage=True))
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
        linear.requires_grad_(False)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, linear)
    return model


def qat_bits_per_weight(model: nn.Module) -> float:
    """Storage bits per weight over all QATLinear layers (codes + fp16 scales + 4-bit zero-points)."""
    layers = qat_layers(model)
    if not layers:
        raise ValueError("the model has no QATLinear layers")
    weights = sum(m.in_features * m.out_features for m in layers.values())
    return sum(m.storage_bits() * m.in_features * m.out_features for m in layers.values()) / weights


@torch.no_grad()
def code_changes(before: nn.Module, after: nn.Module) -> dict[str, torch.Tensor | float]:
    """How far training moved each weight, in steps of its group's scale, and the fraction of codes that moved."""
    if not isinstance(before, nn.Module) or not isinstance(after, nn.Module):
        raise InputTypeError("before and after must be models holding QATLinear layers")
    first, second = qat_layers(before), qat_layers(after)
    if not first or first.keys() != second.keys():
        raise ValueError("before and after must hold the same QATLinear layers")
    moves = torch.empty(sum(layer.weight.numel() for layer in first.values()))  # one buffer, no list + cat
    changed, total = 0, 0
    for name, layer in first.items():
        scale = layer.log_scale.exp().repeat_interleave(layer.group_size, dim=1)  # (out, in)
        count = layer.weight.numel()
        moves[total:total + count] = ((second[name].weight - layer.weight) / scale).flatten()
        changed += (second[name].codes() != layer.codes()).sum().item()
        total += count
    return {"steps_moved": moves, "codes_changed": changed / total}
