"""Pack sub-byte integers into bytes and back: what makes a 4-bit weight really take 4 bits. Taught in 04.

Values are stored unsigned (code - qmin), little end first: for 4 bits, byte = v0 | v1 << 4.
Worked example: the 2-bit values [1, 0, 3, 2] pack into one byte 0b10_11_00_01 = 177.
"""

from __future__ import annotations

import numbers

import torch

from .validation import check_int_in_range, check_tensor

__all__ = ["PACKABLE_BITS", "pack", "unpack", "packed_length"]

PACKABLE_BITS = (1, 2, 4, 8)


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or int(bits) not in PACKABLE_BITS:
        raise ValueError(f"bits must divide 8 to pack whole values per byte: one of {PACKABLE_BITS}, got {bits}")
    return 8 // int(bits)


def packed_length(n_values: int, bits: int) -> int:
    """Bytes needed for n_values codes of `bits` bits (the last byte padded with zeros)."""
    per_byte = _check_bits(bits)
    n_values = check_int_in_range(n_values, "n_values", 0)
    return -(-n_values // per_byte)


def pack(values: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 tensor holding 8 // bits unsigned codes per byte, along the last dimension (zero-padded at its end)."""
    per_byte = _check_bits(bits)
    check_tensor(values, "values", allow_empty=True)
    if values.dim() == 0:
        raise ValueError("values must have at least one dimension (codes are packed along the last)")
    if values.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        raise ValueError(f"pack takes unsigned integer codes, got dtype {values.dtype}")
    if values.numel() and (values.min() < 0 or values.max() >= 2**bits):
        raise ValueError(f"codes must be in 0..{2**bits - 1} for {bits} bits, got {values.min().item()}.."
                         f"{values.max().item()} (shift signed codes by -qmin first)")
    length = values.shape[-1]
    padding = packed_length(length, bits) * per_byte - length
    codes = torch.nn.functional.pad(values.to(torch.int32), (0, padding))
    codes = codes.reshape(*values.shape[:-1], -1, per_byte)  # (..., bytes, values per byte)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (codes << shifts).sum(dim=-1).to(torch.uint8)


def unpack(packed: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    """Inverse of pack: the first `length` codes of the last dimension, as uint8."""
    per_byte = _check_bits(bits)
    check_tensor(packed, "packed", allow_empty=True)
    length = check_int_in_range(length, "length")
    if packed.dim() == 0:
        raise ValueError("packed must have at least one dimension (bytes along the last)")
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack takes a uint8 tensor from pack, got {packed.dtype}")
    if not 0 <= length <= packed.shape[-1] * per_byte:
        raise ValueError(f"length {length} does not fit in {packed.shape[-1]} bytes of {per_byte} codes each")
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    codes = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2**bits - 1)  # (..., bytes, values per byte)
    return codes.reshape(*packed.shape[:-1], -1)[..., :length].to(torch.uint8)
