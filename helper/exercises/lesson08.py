"""Lesson 08's checkers: decode an MXFP4 block by hand, NVFP4's bits per weight, a KV cache's bytes.

Each checker computes the right answer with helper and names the usual slips.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..kv_cache import quantized_kv_cache_bytes
from ..microscaling import MXQuantized, dequantize_mx, nvfp4_bits_per_weight
from .core import Feedback, as_tensor, is_number

__all__ = ["CHECKERS", "MXFP4_BLOCK"]

# The exercise's block: E8M0 scale code 124 (2^-3) and the first 8 E2M1 codes of its 32.
MXFP4_BLOCK = {"scale_code": 124, "codes": [0b0111, 0b1010, 0b0001, 0b0000, 0b1111, 0b0101, 0b0011, 0b1100]}


def _mxfp4_values() -> torch.Tensor:
    codes = torch.tensor(MXFP4_BLOCK["codes"] + [0] * 24, dtype=torch.uint8).unsqueeze(0)
    block = MXQuantized(codes, torch.tensor([[MXFP4_BLOCK["scale_code"]]], dtype=torch.uint8), "e2m1", 32)
    return dequantize_mx(block)[0, :8].double()


def _mxfp4_block(answer: Any) -> Feedback:
    expected = _mxfp4_values()
    values = as_tensor(answer)
    if values is None or values.shape != (8,):
        return Feedback(False, "give the 8 decoded values as a list of numbers, in code order.")
    if torch.allclose(values, expected, atol=1e-9):
        return Feedback(True, f"scale 2^(124 - 127) = 1/8; E2M1 values x 1/8 = {expected.tolist()}.")
    unscaled = expected * 8
    if torch.allclose(values, unscaled):
        return Feedback(False, "those are the E2M1 values: multiply each by the shared scale 2^(124 - 127).")
    if torch.allclose(values, unscaled * 2.0 ** (124 - 127 + 1)) or torch.allclose(values, unscaled / 16):
        return Feedback(False, "the scale is off by a factor 2: E8M0 is 2^(code - 127), with code 124.")
    if torch.allclose(values.abs(), expected.abs()):
        return Feedback(False, "the magnitudes are right; the top bit of each 4-bit code is the sign.")
    return Feedback(False, "decode each code s|ee|m as E2M1 (bias 1, e = 0 subnormal: m / 2), then multiply by "
                           "2^(124 - 127).")


def _nvfp4_bits(answer: Any) -> Feedback:
    numel = 1536 * 576
    expected = nvfp4_bits_per_weight(numel)
    if not is_number(answer):
        return Feedback(False, "give the bits per weight as a number.")
    if math.isclose(answer, expected, rel_tol=0, abs_tol=5e-6):
        return Feedback(True, f"4 + 8 / 16 + 32 / {numel:,} = {expected:.6f} bits per weight.")
    if math.isclose(answer, 4.5, abs_tol=5e-7):
        return Feedback(False, "4.5 leaves out the one fp32 scale of the whole tensor: add 32 / (1536 x 576).")
    if math.isclose(answer, 4.25, abs_tol=1e-6) or math.isclose(answer, 4.25 + 32 / numel, abs_tol=1e-6):
        return Feedback(False, "that is MXFP4's block of 32: NVFP4's blocks hold 16 weights, each with an 8-bit "
                               "E4M3 scale.")
    if math.isclose(answer, 4 + 32 / 16 + 32 / numel, abs_tol=1e-5):
        return Feedback(False, "NVFP4's block scale is E4M3, 8 bits, not 32.")
    return Feedback(False, "bits = 4 (E2M1) + 8 / 16 (an E4M3 scale per 16) + 32 / weights (one fp32 scale).")


def _kv_bytes(answer: Any) -> Feedback:
    expected = quantized_kv_cache_bytes(32, 8, 128, 32768)  # Llama-3-8B: 32 layers, 8 KV heads, 128 dims
    if not is_number(answer):
        return Feedback(False, "give the number of bytes as a number.")
    if math.isclose(answer, expected, rel_tol=1e-9):
        return Feedback(True, f"2 x 32 x 8 x 128 x 32,768 x 2 bytes = {int(expected):,} bytes ({expected / 2**30:.0f} "
                              f"GiB).")
    if math.isclose(answer, expected / 2, rel_tol=1e-9):
        return Feedback(False, "count keys AND values: the factor 2 in front.")
    if math.isclose(answer, expected * 4, rel_tol=1e-9):
        return Feedback(False, "the 32 query heads share 8 KV heads (grouped-query attention): use 8.")
    if math.isclose(answer, expected * 2, rel_tol=1e-9):
        return Feedback(False, "fp16 is 2 bytes per number, not 4.")
    if math.isclose(answer, expected / 2**30, rel_tol=1e-6):
        return Feedback(False, "that is GiB: give bytes.")
    return Feedback(False, "bytes = 2 (K and V) x layers x KV heads x head_dim x tokens x 2 bytes (fp16).")


CHECKERS = {"08-mxfp4-block": _mxfp4_block, "08-nvfp4-bits": _nvfp4_bits, "08-kv-bytes": _kv_bytes}
