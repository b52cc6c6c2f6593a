"""Lesson 04's checkers: packing, the bytes of a W4A16 layer, bits per weight."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..layers import W4A16Linear
from ..packing import pack
from .core import Feedback, is_number

__all__ = ["CHECKERS"]


def _pack_2bit(answer: Any) -> Feedback:
    if not callable(answer):
        return Feedback(False, "pass your function itself (my_pack_2bit), not its result.")
    generator = torch.Generator().manual_seed(4)
    values = torch.randint(0, 4, (3, 16), generator=generator, dtype=torch.uint8)
    try:
        packed = answer(values)
    except Exception as error:  # a learner's function may fail in any way; say how
        return Feedback(False, f"your function raised {type(error).__name__}: {error}")
    if packed is None:
        return Feedback(False, "your function returned None: return the packed uint8 tensor.")
    packed = torch.as_tensor(packed)
    expected = pack(values, 2)
    if packed.shape != expected.shape:
        return Feedback(False, f"expected shape {tuple(expected.shape)} (4 values per byte), got {tuple(packed.shape)}.")
    if packed.dtype != torch.uint8:
        return Feedback(False, f"return uint8 bytes, not {packed.dtype}.")
    if torch.equal(packed, expected):
        return Feedback(True, "same bytes as helper.pack(values, 2): value i of a byte sits at bits 2i..2i+1.")
    reversed_order = pack(values.flip(-1), 2).flip(-1)
    if torch.equal(packed, reversed_order):
        return Feedback(False, "the right values, in reverse order: the first value goes in the lowest 2 bits.")
    return Feedback(False, "the bytes differ: byte = v0 | v1 << 2 | v2 << 4 | v3 << 6 for each group of 4 values.")


def _w4a16_bytes(answer: Any) -> Feedback:
    layer = W4A16Linear(576, 1536, bias=False, group_size=32)
    expected = sum(t.numel() * t.element_size() for t in layer.buffers())
    codes = 576 * 1536 // 2
    if not is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{codes:,} B of packed codes + {expected - codes:,} B of fp32 scales "
                              f"(1536 rows x 18 groups x 4 B) = {expected:,} B: 5 bits per weight.")
    if answer == codes:
        return Feedback(False, "that is the packed codes only: add one fp32 scale per group of 32 weights.")
    if answer == 576 * 1536 + (expected - codes):
        return Feedback(False, "codes are packed two per byte: 4 bits, not 8, per weight.")
    if answer == 576 * 1536 * 4:
        return Feedback(False, "that is the fp32 layer; the quantized one stores 4-bit codes + scales.")
    return Feedback(False, f"{answer:,} is not it: (weights x 4 bits) / 8 + (weights / 32) x 4 bytes.")


def _bits_per_weight(answer: Any) -> Feedback:
    expected = 4 + 16 / 32
    if not is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    if math.isclose(answer, expected):
        return Feedback(True, "4 bits of code + a 16-bit scale shared by 32 weights (0.5 bit each) = 4.5.")
    if math.isclose(answer, 4):
        return Feedback(False, "the scales cost something too: 16 bits per group of 32 weights.")
    if math.isclose(answer, 5):
        return Feedback(False, "that is with fp32 scales; the question says 16-bit scales.")
    return Feedback(False, f"{answer} is not it: 4 + 16 / 32.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "04.pack_2bit": _pack_2bit,
    "04.w4a16_layer_bytes": _w4a16_bytes,
    "04.bits_per_weight_g32": _bits_per_weight,
}
