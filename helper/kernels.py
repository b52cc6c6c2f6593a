"""Fused weight-only kernels: the same int8 / int4 codes as our layers, multiplied without dequantizing. Taught in 09.

Our W8A16Linear and W4A16Linear (lesson 04) rebuild a full float weight on every forward, so they read
more bytes than fp32 does. PyTorch ships CPU kernels that read the packed codes inside the matmul:
`torch._weight_int8pack_mm` (int8 codes, one scale per output row) and `_weight_int4pack_mm_for_cpu`
(two 4-bit codes per byte, a scale and zero per group of 32/64/128/256 inputs). torchao's CPU
weight-only configs call these same kernels. The layers below take their codes from our layers, so
the two compute with the same weights and differ only in how they read them.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import W4A16Linear, W8A16Linear
from .packing import unpack
from .validation import InputTypeError

__all__ = ["INT4_KERNEL_GROUP_SIZES", "Int8WeightOnlyLinear", "Int4WeightOnlyLinear", "to_fused_kernels"]

INT4_KERNEL_GROUP_SIZES = (32, 64, 128, 256)  # what _weight_int4pack_mm_for_cpu accepts


def _check_x(x: object, in_features: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputTypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must end in {in_features} features, got shape {tuple(x.shape)}")
    return x


class Int8WeightOnlyLinear(nn.Module):
    """y = x (q * scale)^T + b, computed by torch._weight_int8pack_mm straight from the int8 codes."""

    def __init__(self, int8_weights: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if int8_weights.dtype != torch.int8 or int8_weights.dim() != 2:
            raise ValueError(f"int8_weights must be a 2-D int8 tensor, got {int8_weights.dtype} "
                             f"{tuple(int8_weights.shape)}")
        self.out_features, self.in_features = int8_weights.shape
        self.register_buffer("int8_weights", int8_weights.contiguous())
        self.register_buffer("scales", scales.reshape(self.out_features).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_w8a16(cls, layer: W8A16Linear) -> "Int8WeightOnlyLinear":
        """The same codes and scales as one of our W8A16Linear layers."""
        if not isinstance(layer, W8A16Linear):
            raise InputTypeError(f"layer must be a W8A16Linear, got {type(layer).__name__}")
        return cls(layer.int8_weights, layer.scales, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fused int8 weight-only matmul (activations in their own dtype)."""
        x = _check_x(x, self.in_features)
        rows = x.reshape(-1, self.in_features)  # (tokens, in)
        y = torch._weight_int8pack_mm(rows, self.int8_weights, self.scales.to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


class Int4WeightOnlyLinear(nn.Module):
    """y = x ((q - 8) * scale)^T + b, computed by _weight_int4pack_mm_for_cpu from two codes per byte."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, group_size: int, bias: torch.Tensor | None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if codes.dim() != 2 or codes.is_floating_point() or not (0 <= int(codes.min()) and int(codes.max()) <= 15):
            raise ValueError("codes must be a 2-D integer tensor of unsigned 4-bit codes 0..15")
        if group_size not in INT4_KERNEL_GROUP_SIZES:
            raise ValueError(f"group_size must be one of {INT4_KERNEL_GROUP_SIZES} for the int4 kernel, "
                             f"got {group_size}")
        self.out_features, self.in_features = codes.shape
        if self.in_features % group_size:
            raise ValueError(f"group_size {group_size} does not divide in_features {self.in_features}")
        self.group_size = group_size
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)
        self.register_buffer("packed_weights", packed)  # (out, in / 2) uint8
        scales = scales.reshape(self.out_features, -1).T.contiguous()  # (groups, out)
        self.register_buffer("scales_and_zeros", torch.stack([scales, torch.zeros_like(scales)], -1).to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_w4a16(cls, layer: W4A16Linear) -> "Int4WeightOnlyLinear":
        """The same codes and scales as one of our symmetric W4A16Linear layers (group size 32..256)."""
        if not isinstance(layer, W4A16Linear):
            raise InputTypeError(f"layer must be a W4A16Linear, got {type(layer).__name__}")
        if not layer.symmetric:
            raise ValueError("the int4 kernel here takes symmetric layers (x = (q - 8) * scale)")
        codes = unpack(layer.packed_weights, 4, layer.in_features)  # (out, in), 0..15
        return cls(codes, layer.scales.float(), layer.group_size, layer.bias, layer.scales.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fused int4 weight-only matmul."""
        x = _check_x(x, self.in_features)
        rows = x.reshape(-1, self.in_features)  # (tokens, in)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed_weights, self.group_size,
                                                       self.scales_and_zeros.to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def to_fused_kernels(model: nn.Module) -> nn.Module:
    """Swap every W8A16Linear / symmetric W4A16Linear for its fused-kernel twin (same codes), in place."""
    swaps = {W8A16Linear: Int8WeightOnlyLinear.from_w8a16, W4A16Linear: Int4WeightOnlyLinear.from_w4a16}
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) in swaps:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, swaps[type(module)](module))
            replaced += 1
    if not replaced:
        raise ValueError("the model has no W8A16Linear or W4A16Linear layers (run replace_linear first)")
    return model
