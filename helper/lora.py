"""LoRA over a frozen quantized base (QLoRA, Dettmers et al. 2023): only the low-rank adapters train. Taught in 07.

A LoRALinear computes y = dequantize(W_q) x + (alpha / r) B A x. The base W_q is stored 4-bit and never
changes: NF4 in blocks of 64 with double-quantized absmax constants (lesson 05, 4.127 bits/weight) or int4
with one scale per group (lesson 04). A (r x in) starts as peft's kaiming-uniform, B (out x r) as zeros, so
the wrapped model computes exactly what the quantized base does until the first optimizer step.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .codebooks import (dequantize_blockwise, dequantize_double, double_quantize, nf4_codebook,
                        quantize_blockwise)
from .layers import W4A16Linear, fit_group_size
from .packing import pack, unpack
from .validation import (InputTypeError, check_bool, check_choice, check_float_tensor, check_int_in_range,
                         check_positive)

__all__ = ["NF4Weight", "LoRALinear", "add_lora", "lora_parameters", "make_lora_optimizer", "merge_lora",
           "merge_lora_model", "train_lora", "lora_memory_bytes", "measured_training_bytes"]

BASES = ("nf4", "int4", "fp32")


class NF4Weight(nn.Module):
    """A frozen NF4 weight: 4-bit codes two per byte, absmax per block of 64, double-quantized (lesson 05)."""

    def __init__(self, weight: torch.Tensor, block_size: int = 64, double_quant: bool = True) -> None:
        super().__init__()
        check_float_tensor(weight, "weight")
        if weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D (out, in) tensor, got shape {tuple(weight.shape)}")
        self.shape = tuple(weight.shape)
        self.block_size, self.double_quant = block_size, check_bool(double_quant, "double_quant")
        codes, absmax = quantize_blockwise(weight, nf4_codebook(), block_size)
        self.register_buffer("packed_codes", pack(codes, 4))  # (numel / 2,) uint8
        if self.double_quant:
            absmax_codes, second, offset = double_quantize(absmax)
            self.register_buffer("absmax_codes", absmax_codes)  # (blocks,) uint8
            self.register_buffer("absmax_scales", second)  # (blocks / 256,) float32
            self.register_buffer("absmax_offset", offset.reshape(1))
        else:
            self.register_buffer("absmax", absmax)

    def dequantize(self) -> torch.Tensor:
        """The weight the layer computes with: NF4[code] * absmax of its block, (out, in) float32."""
        numel = math.prod(self.shape)
        codes = unpack(self.packed_codes, 4, numel)
        if self.double_quant:
            absmax = dequantize_double(self.absmax_codes, self.absmax_scales, self.absmax_offset[0])
        else:
            absmax = self.absmax
        return dequantize_blockwise(codes, absmax, nf4_codebook(), self.shape)


def _quantized_base(linear: nn.Linear, base: str, group_size: int) -> nn.Module | torch.Tensor:
    if base == "nf4":
        return NF4Weight(linear.weight)
    if base == "int4":
        frozen = nn.Linear(linear.in_features, linear.out_features, bias=False)
        frozen.weight = linear.weight
        return W4A16Linear.from_linear(frozen, fit_group_size(linear.in_features, group_size))
    return linear.weight.detach().float().clone()


class _FrozenBaseMatmul(torch.autograd.Function):
    """x W^T for a frozen quantized W, dequantized in the forward and again in the backward.

    Plain autograd would keep every layer's dequantized fp32 weight until the backward pass (F.linear saves its
    weight to compute the input's gradient): the 4-bit base would cost fp32 memory after all. Dequantizing twice,
    as bitsandbytes' MatMul4Bit does, keeps only the 4-bit codes.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: "LoRALinear") -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.base_weight_dequantized().to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad @ ctx.layer.base_weight_dequantized().to(grad.dtype), None


class LoRALinear(nn.Module):
    """y = x W_base^T + b + (alpha / rank) (dropout(x) A^T) B^T, with W_base frozen (NF4, int4 or fp32)."""

    def __init__(self, linear: nn.Linear, rank: int = 8, alpha: float = 16.0, base: str = "nf4",
                 group_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise InputTypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        rank = check_int_in_range(rank, "rank")
        if not 1 <= rank <= min(linear.in_features, linear.out_features):
            raise ValueError(f"rank must be in 1..min(in_features, out_features) = "
                             f"{min(linear.in_features, linear.out_features)}, got {rank}")
        self.alpha = check_positive(alpha, "alpha")
        self.base_kind = check_choice(base, "base", BASES)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features, self.out_features, self.rank = linear.in_features, linear.out_features, rank
        self.scaling = self.alpha / rank
        stored = _quantized_base(linear, self.base_kind, group_size)
        if isinstance(stored, torch.Tensor):
            self.register_buffer("base_weight", stored)
        else:
            self.base = stored
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.lora_A = nn.Parameter(torch.empty(rank, linear.in_features))
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default for A; B = 0
        self.dropout = nn.Dropout(dropout)

    def base_weight_dequantized(self) -> torch.Tensor:
        """The frozen base weight as the forward uses it, (out, in) float32."""
        if self.base_kind == "fp32":
            return self.base_weight
        if self.base_kind == "nf4":
            return self.base.dequantize()
        return self.base.dequantized_weight(torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantized base matmul plus the scaled low-rank update (the base gets no gradient)."""
        if not isinstance(x, torch.Tensor) or x.shape[-1] != self.in_features:
            raise ValueError(f"x must end in {self.in_features} features, got {getattr(x, 'shape', type(x))}")
        if self.base_kind == "fp32":  # the stored weight itself: autograd keeps no copy of it
            result = F.linear(x, self.base_weight.to(x.dtype), self.bias)
        else:
            result = _FrozenBaseMatmul.apply(x, self)
            result = result if self.bias is None else result + self.bias
        return result + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, base={self.base_kind}, "
                f"rank={self.rank}, alpha={self.alpha:g}")


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, base: str = "nf4",
             exclude: tuple[str, ...] = ("lm_head",), group_size: int = 128, progress: bool = False) -> nn.Module:
    """A copy of model with every nn.Linear (but `exclude`) a LoRALinear; everything but the adapters frozen."""
    from tqdm.auto import tqdm

    model = copy.deepcopy(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)
             and not any(name == e or name.endswith("." + e) for e in exclude)]
    if not names:
        raise ValueError("the model has no nn.Linear layers outside the excluded ones")
    for name in tqdm(names, desc=f"LoRA over {base}", disable=not progress, leave=False):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, base, group_size))
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that will train (requires_grad); a clear error when there are none."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters: nothing would train (did you call add_lora, "
                         "or freeze the adapters too?)")
    return parameters


def make_lora_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """Adam over the trainable parameters only (the adapters), with a clear error if there are none."""
    return torch.optim.Adam(lora_parameters(model), lr=check_positive(lr, "lr"))


@torch.no_grad()
def merge_lora(layer: LoRALinear, requantize: bool = False) -> nn.Linear:
    """An nn.Linear with W = dequantize(W_base) + (alpha / r) B A; requantize rounds it back to the base's grid.

    Before re-quantization this equals base + adapters exactly (up to float32 rounding of the sum); after,
    the merged weight is moved back onto the 4-bit grid, which the adapters' update did not respect.
    """
    if not isinstance(layer, LoRALinear):
        raise InputTypeError(f"layer must be a LoRALinear, got {type(layer).__name__}")
    merged = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    merged.weight.copy_(layer.base_weight_dequantized() + layer.scaling * layer.lora_B @ layer.lora_A)
    if layer.bias is not None:
        merged.bias.copy_(layer.bias)
    if check_bool(requantize, "requantize") and layer.base_kind != "fp32":
        if layer.base_kind == "nf4":
            merged.weight.copy_(NF4Weight(merged.weight, layer.base.block_size, layer.base.double_quant).dequantize())
        else:
            requantized = W4A16Linear.from_linear(merged, layer.base.group_size, layer.base.symmetric)
            merged.weight.copy_(requantized.dequantized_weight(torch.float32))
    return merged


def merge_lora_model(model: nn.Module, requantize: bool = False) -> nn.Module:
    """A copy of model with every LoRALinear folded into an nn.Linear (merge_lora), optionally re-quantized."""
    model = copy.deepcopy(model)
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    if not names:
        raise ValueError("the model has no LoRALinear layers to merge")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, merge_lora(getattr(parent, child), requantize).requires_grad_(False))
    return model


def train_lora(model: nn.Module, windows: torch.Tensor, steps: int, lr: float = 1e-3, batch_size: int = 2,
               evaluate=None, eval_every: int = 0, progress: bool = False) -> dict[str, list]:
    """Adam on the adapters, next-token cross-entropy over windows cycled in order; returns the loss curve.

    evaluate(model) -> float runs at step 0, every eval_every steps and at the end: (step, value) pairs.
    """
    from tqdm.auto import tqdm

    steps = check_int_in_range(steps, "steps", 1)
    batch_size = check_int_in_range(batch_size, "batch_size", 1)
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (n, tokens >= 2) token ids, got {getattr(windows, 'shape', windows)}")
    optimizer = make_lora_optimizer(model, lr)
    history: dict[str, list] = {"loss": [], "eval": []}
    if evaluate is not None:
        history["eval"].append((0, evaluate(model)))
    model.train()
    for step in tqdm(range(steps), desc="LoRA", disable=not progress, leave=False):
        start = (step * batch_size) % windows.shape[0]
        batch = windows[start:start + batch_size]
        logits = model(input_ids=batch).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
        if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            model.eval()
            history["eval"].append((step + 1, evaluate(model)))
            model.train()
    model.eval()
    model.zero_grad(set_to_none=True)  # the gradients (as large as the trained weights) are not needed after
    return history


def lora_memory_bytes(base_params: int, adapter_params: int, base_bits: float, activation_bytes: int = 0,
                      adapter_bytes: int = 4, optimizer_states: int = 2) -> dict[str, float]:
    """QLoRA-style training memory: base at base_bits, adapters + their gradients + Adam's two moments, activations.

    base = base_params * base_bits / 8; adapters = gradients = adapter_params * adapter_bytes;
    Adam = optimizer_states * adapter_params * 4 (fp32 moments). E.g. 7e9 params at 4.127 bits: 3.61 GB.
    """
    base_params = check_int_in_range(base_params, "base_params", 0)
    adapter_params = check_int_in_range(adapter_params, "adapter_params", 0)
    check_positive(base_bits, "base_bits")
    activation_bytes = check_int_in_range(activation_bytes, "activation_bytes", 0)
    parts = {"base weights": base_params * base_bits / 8, "adapters": adapter_params * adapter_bytes,
             "adapter gradients": adapter_params * adapter_bytes,
             "Adam states": optimizer_states * adapter_params * 4, "activations": activation_bytes}
    parts["total"] = sum(parts.values())
    return parts


def measured_training_bytes(model: nn.Module) -> dict[str, int]:
    """What a LoRA model holds in tensors: base (buffers and frozen parameters), adapters, and their gradients."""
    adapters = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    gradients = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                    if p.requires_grad and p.grad is not None)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"frozen": frozen + buffers, "adapters": adapters, "adapter gradients": gradients}
