"""Lesson 05's checkers: a Q4_1 weight, NF4 double quantization, an E2M1 value."""

from __future__ import annotations

import math
from typing import Any, Callable


from .core import Feedback, is_number

__all__ = ["CHECKERS"]


def _q4_1_weight(answer: Any) -> Feedback:
    d, m, q = 2.0**-6, -0.1875, 11  # fp16-exact: what a Q4_1 block stores
    expected = q * d + m
    if not is_number(answer):
        return Feedback(False, "give the decoded weight as a number.")
    if math.isclose(answer, expected, abs_tol=1e-6):
        return Feedback(True, f"x = q * d + m = 11 x 0.015625 - 0.1875 = {expected}.")
    if math.isclose(answer, q * d, abs_tol=1e-6):
        return Feedback(False, "add the block's minimum m: Q4_1 stores a scale AND a minimum.")
    if math.isclose(answer, (q - 8) * d, abs_tol=1e-6):
        return Feedback(False, "that is the Q4_0 rule (q - 8) * d; Q4_1 uses q * d + m.")
    return Feedback(False, f"{answer} is not it: x = q * d + m.")


def _nf4_double_quant_bits(answer: Any) -> Feedback:
    expected = 4 + 8 / 64 + 32 / (64 * 256)
    if not is_number(answer):
        return Feedback(False, "give bits per parameter as a number.")
    if math.isclose(answer, expected, abs_tol=5e-4):
        return Feedback(True, f"4 + 8/64 + 32/(64 x 256) = {expected:.4f} bits: double quantization saves "
                              f"{4.5 - expected:.3f} bits per parameter, about 3 GB on a 65 B model.")
    if math.isclose(answer, 4.5):
        return Feedback(False, "that is without double quantization (one fp32 absmax per 64 weights).")
    if math.isclose(answer, 4.125):
        return Feedback(False, "almost: the 8-bit absmax codes need their own fp32 scale, one per 256 of them.")
    return Feedback(False, f"{answer} is not it: 4 bits + an 8-bit absmax per 64 + an fp32 per 64 x 256.")


def _e2m1_value(answer: Any) -> Feedback:
    if not is_number(answer):
        return Feedback(False, "give the value as a number.")
    if answer == 6.0:
        return Feedback(True, "s = 0, exponent 11 = 3, mantissa 1: (1 + 1/2) x 2^(3 - 1) = 6, FP4's largest value.")
    if answer == 12.0:
        return Feedback(False, "remember the exponent bias of 1: 2^(3 - 1), not 2^3.")
    if answer == 4.0:
        return Feedback(False, "the mantissa bit adds 1/2: (1 + 1/2), not 1.")
    return Feedback(False, f"{answer} is not it: (1 + m/2) x 2^(e - 1) for the bits s=0, e=11, m=1.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "05.q4_1_weight": _q4_1_weight,
    "05.nf4_double_quant_bits": _nf4_double_quant_bits,
    "05.e2m1_value": _e2m1_value,
}
