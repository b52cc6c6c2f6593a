"""Lesson 05's checkers: a Q4_1 weight, decoding a whole Q4_1 block with your own function, NF4 double
quantization, an E2M1 value.

Answers rounded to the precision the lesson prints are right; coarser roundings and the usual slips get a
message that names them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..gguf_io import dequantize_q4_1
from .core import Feedback, as_array, call_learner, decimals, is_number, rounded_to_own_decimals

__all__ = ["CHECKERS"]


def _q4_1_weight(answer: Any) -> Feedback:
    d, m, q = 2.0**-6, -0.1875, 11  # fp16-exact: what a Q4_1 block stores
    expected = q * d + m
    if not is_number(answer):
        return Feedback(False, "give the decoded weight as a number.")
    rounded = rounded_to_own_decimals(answer, expected, min_decimals=4)
    if rounded:
        return Feedback(True, f"x = q * d + m = 11 x 0.015625 - 0.1875 = {expected}.")
    if rounded is None:
        return Feedback(False, f"{answer} is {expected} rounded too far: give at least 4 decimals "
                               f"(the exact value has 6).")
    if math.isclose(answer, q * d, abs_tol=1e-6):
        return Feedback(False, "add the block's minimum m: Q4_1 stores a scale AND a minimum.")
    if math.isclose(answer, (q - 8) * d, abs_tol=1e-6):
        return Feedback(False, "that is the Q4_0 rule (q - 8) * d; Q4_1 uses q * d + m.")
    if math.isclose(answer, q * d - m, abs_tol=1e-6):
        return Feedback(False, "m is already negative (-0.1875): add it, q * d + m, do not subtract it.")
    if math.isclose(answer, q * m + d, abs_tol=1e-6):
        return Feedback(False, "d and m are swapped: the scale d multiplies the code, the minimum m is added.")
    return Feedback(False, f"{answer} is not it: x = q * d + m.")


# --- decode a whole Q4_1 block from its 20 raw bytes with the learner's own function -----------------------

def q4_1_hidden_blocks() -> list[np.ndarray]:
    """The hidden test blocks: 20 bytes each, fp16 d > 0 and m (mostly negative, one positive), random nibbles."""
    generator = np.random.default_rng(5)
    blocks = []
    for k in range(6):
        d = np.float16(generator.uniform(0.002, 0.2))
        m = np.float16(generator.uniform(-2.0, -0.05) if k != 4 else generator.uniform(0.05, 1.0))
        nibbles = generator.integers(0, 256, 16, dtype=np.uint8)
        blocks.append(np.concatenate([np.array([d, m], dtype="<f2").view(np.uint8), nibbles]))
    return blocks


def _fields(block: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    d = float(block[0:2].view("<f2")[0])
    m = float(block[2:4].view("<f2")[0])
    low, high = block[4:] & 15, block[4:] >> 4
    return d, m, low.astype(np.float64), high.astype(np.float64)


def _slips(block: np.ndarray) -> dict[str, np.ndarray]:
    """What the usual slips decode the block to, each with the message that names it."""
    d, m, low, high = _fields(block)
    q = np.concatenate([low, high])
    big_d, big_m = (float(block[i:i + 2].view(">f2")[0]) for i in (0, 2))
    q4_0_layout = np.concatenate([block[2:18] & 15, block[2:18] >> 4]).astype(np.float64)
    return {
        "d and m are swapped: bytes 0-1 hold the scale d, bytes 2-3 the minimum m (x = q * d + m).": q * m + d,
        "the minimum m is missing: x = q * d + m.": q * d,
        "that is the Q4_0 rule (q - 8) * d; Q4_1 adds a minimum instead: x = q * d + m.": (q - 8) * d,
        "m is subtracted: it is the block's (signed) minimum, add it: x = q * d + m.": q * d - m,
        "nibble order: byte j holds weight j in its LOW nibble and weight j + 16 in its HIGH nibble (not weights "
        "2j and 2j + 1).": np.stack([low, high], axis=1).reshape(-1) * d + m,
        "nibble order: weights 0-15 are the LOW nibbles (byte & 15), weights 16-31 the high ones (byte >> 4).":
            np.concatenate([high, low]) * d + m,
        "d and m are little-endian fp16 (np.float16 / '<f2'), not big-endian.": q * big_d + big_m,
        "the nibbles start at byte 4, after d (bytes 0-1) and m (bytes 2-3); byte 2 is Q4_0's layout.":
            q4_0_layout * d + m,
        "these are the 4-bit codes q; decode them: x = q * d + m.": q,
    }


def _diagnose_q4_1(values: np.ndarray, block: np.ndarray, expected: np.ndarray) -> str:
    tolerance = 1e-5 * max(1.0, float(np.abs(expected).max()))
    for message, decoded in _slips(block).items():
        if np.allclose(values, decoded, rtol=0, atol=tolerance):
            return message
    d, m, low, high = _fields(block)
    wrong = np.flatnonzero(~np.isclose(values, expected, rtol=0, atol=tolerance))
    i = int(wrong[0])
    q = int(low[i] if i < 16 else high[i - 16])
    where = (f"weight {i} (code {q}, the {'low' if i < 16 else 'high'} nibble of byte {4 + i % 16}) should be "
             f"{q} x {d:.6g} + ({m:.6g}) = {expected[i]:.6g}, you gave {values[i]:.6g}")
    if wrong.min() >= 16:
        return f"weights 0-15 are right, 16-31 are not: {where}. Weights 16-31 are the high nibbles, byte >> 4."
    if wrong.max() < 16:
        return f"weights 16-31 are right, 0-15 are not: {where}. Weights 0-15 are the low nibbles, byte & 15."
    return where + "."


def _dequantize_q4_1_block(answer: Any) -> Feedback:
    if not callable(answer):
        return call_learner(answer, "my_dequantize_q4_1")[1]
    blocks = q4_1_hidden_blocks()
    for k, block in enumerate(blocks, 1):
        d, m, _, _ = _fields(block)
        where = f"hidden block {k} of {len(blocks)} (d = {d:.6g}, m = {m:.6g})"
        result, problem = call_learner(answer, "my_dequantize_q4_1", block.copy())
        if problem:
            return Feedback(False, f"{where}: {problem.message}")
        values, message = as_array(result, "32 float32 values")
        if message:
            return Feedback(False, f"{where}: {message}")
        if values.size == 16:
            return Feedback(False, f"{where}: 16 values, one per byte: each of the 16 bytes holds two 4-bit codes, "
                                   f"so a block decodes to 32 weights.")
        if values.shape != (32,):
            return Feedback(False, f"{where}: return the 32 weights as a flat array of shape (32,), got shape "
                                   f"{values.shape}.")
        if values.dtype == np.float16:
            return Feedback(False, f"{where}: you computed in float16, which rounds q * d + m again: convert d and "
                                   f"m with .astype(np.float32) first, as llama.cpp does.")
        expected = dequantize_q4_1(block).astype(np.float64)
        if values.dtype.kind not in "fiu":
            return Feedback(False, f"{where}: return numbers (float32), not {values.dtype}.")
        if np.allclose(values.astype(np.float64), expected, rtol=1e-6, atol=1e-7):
            continue
        return Feedback(False, f"{where}: " + _diagnose_q4_1(values.astype(np.float64), block, expected))
    return Feedback(True, f"all {len(blocks)} hidden blocks decode exactly as helper.gguf_io.dequantize_q4_1 (and "
                          f"the gguf package): d = bytes 0-1, m = bytes 2-3 (fp16), then 16 bytes of nibbles, low "
                          f"= weights 0-15, high = weights 16-31, x = q * d + m.")


def _nf4_double_quant_bits(answer: Any) -> Feedback:
    expected = 4 + 8 / 64 + 32 / (64 * 256)  # 4.126953125
    if not is_number(answer):
        return Feedback(False, "give bits per parameter as a number.")
    rounded = rounded_to_own_decimals(answer, expected, min_decimals=3)
    if rounded:
        return Feedback(True, f"4 + 8/64 + 32/(64 x 256) = {expected:.4f} bits: double quantization saves "
                              f"{4.5 - expected:.3f} bits per parameter, about 3 GB on a 65 B model.")
    if rounded is None:
        places = decimals(answer)
        return Feedback(False, f"{answer:g} is the right answer rounded to {places} decimal{'s' * (places != 1)}, "
                               f"but 4.125 (the answer that forgets the fp32 scale of the 8-bit absmax codes) "
                               f"rounds to {round(4.125 + 1e-9, places):g} too: give 3 decimals, as the lesson "
                               f"prints it.")
    if math.isclose(answer, 4.5):
        return Feedback(False, "that is without double quantization (one fp32 absmax per 64 weights).")
    if math.isclose(answer, 4.125):
        return Feedback(False, "almost: the 8-bit absmax codes need their own fp32 scale, one per 256 of them.")
    if abs(answer - expected) < 1e-3:
        return Feedback(False, f"{answer} is {expected} cut off, not rounded: it rounds to {expected:.3f}.")
    if math.isclose(answer, 4 + 8 / 64 + 32 / 256):
        return Feedback(False, "the fp32 scale is shared by 256 absmax codes, each of which serves 64 weights: "
                               "32 / (64 x 256) bits per weight, not 32 / 256.")
    return Feedback(False, f"{answer} is not it: 4 bits + an 8-bit absmax per 64 + an fp32 per 64 x 256.")


def _e2m1_value(answer: Any) -> Feedback:
    if not is_number(answer):
        return Feedback(False, "give the value as a number.")
    slips = {
        12.0: "remember the exponent bias of 1: 2^(3 - 1), not 2^3.",
        4.0: "the mantissa bit adds 1/2: (1 + 1/2), not 1.",
        -6.0: "the first bit is the sign, and it is 0 here: the value is positive.",
        1.0: ("1.0 is this code's level in the normalised codebook (E2M1 / 6, largest level 1, as section 1 prints "
              "it); the code itself stands for the unnormalised value."),
        3.0: "the exponent bias is 1, not 2: 2^(3 - 1).",
        1.5: "the exponent bits 11 = 3 still scale the value: times 2^(3 - 1).",
        7.0: "0111 read as an unsigned integer is 7, but E2M1 is a float: (1 + m/2) x 2^(e - 1).",
        -12.0: "two slips: the sign bit 0 means positive, and the exponent bias is 1.",
    }
    if answer == 6.0:
        return Feedback(True, "s = 0, exponent 11 = 3, mantissa 1: (1 + 1/2) x 2^(3 - 1) = 6, FP4's largest value.")
    if float(answer) in slips:
        return Feedback(False, slips[float(answer)])
    return Feedback(False, f"{answer} is not it: (1 + m/2) x 2^(e - 1) for the bits s=0, e=11, m=1.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "05.q4_1_weight": _q4_1_weight,
    "05.dequantize_q4_1": _dequantize_q4_1_block,
    "05.nf4_double_quant_bits": _nf4_double_quant_bits,
    "05.e2m1_value": _e2m1_value,
}
