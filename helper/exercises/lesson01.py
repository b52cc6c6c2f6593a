"""Lesson 01's checkers: memory of a model, float bits, stored values, integer ranges."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..dtypes import from_bits, stored_value, to_bits
from ..sizes import model_memory_bytes
from .core import Feedback, as_tensor, is_number

__all__ = ["CHECKERS"]


def _bf16_memory_7b(answer: Any) -> Feedback:
    expected = model_memory_bytes(7_000_000_000, "BF16")
    if not is_number(answer):
        return Feedback(False, "give a number of bytes, e.g. 1_000_000_000.")
    if answer == expected:
        return Feedback(True, f"7e9 parameters x 2 bytes = {expected:,} bytes (14 GB).")
    if answer == expected / 1e9:
        return Feedback(False, "that is the size in GB; the question asks for bytes.")
    if answer == model_memory_bytes(7_000_000_000, "FP32"):
        return Feedback(False, "that is the FP32 size: bf16 has 16 bits = 2 bytes per parameter.")
    if answer == 7_000_000_000 * 16:
        return Feedback(False, "that counts bits; divide by 8 to get bytes.")
    return Feedback(False, f"{answer:,} is off by a factor of {answer / expected:.3g}. Bytes = parameters x bits / 8.")


def _fp16_bits_of_minus_2_5(answer: Any) -> Feedback:
    expected = to_bits(-2.5, torch.float16)
    if isinstance(answer, int) and 0 <= answer < 2**16:  # 0b1100000100000000 is the same 16 bits
        answer = format(answer, "016b")
    if not isinstance(answer, str):
        return Feedback(False, "give the bits as a string of 16 characters, e.g. '0 01111 0000000000'.")
    clean = answer.replace(" ", "").replace("_", "")
    if clean == to_bits(-2.5, torch.float32):
        return Feedback(False, "those are the 32 bits fp32 stores (8 exponent bits, bias 127, 23 mantissa bits); "
                               "fp16 has 1 + 5 + 10 bits and bias 15.")
    if len(clean) != 16 or set(clean) - {"0", "1"}:
        return Feedback(False, f"fp16 has 16 bits of 0/1; your string has {len(clean)} characters.")
    if clean == to_bits(-2.5, torch.bfloat16):
        return Feedback(False, f"{clean[0]} {clean[1:9]} {clean[9:]} is -2.5 in bf16's layout (8 exponent bits, "
                               "bias 127, 7 mantissa bits). fp16 splits its 16 bits as 1 + 5 + 10, with bias 15.")
    if clean == expected:
        return Feedback(True, f"sign 1, exponent {expected[1:6]} (16 - 15 = 1), mantissa {expected[6:]} "
                              "(1.25): -1.25 x 2^1 = -2.5.")
    got = from_bits(clean, torch.float16)
    if clean[0] != expected[0]:
        return Feedback(False, f"the sign bit is wrong (your bits are {got!r}). Negative numbers have sign bit 1.")
    if clean[1:6] != expected[1:6]:
        return Feedback(False, f"your bits are {got!r}: the exponent is off. -2.5 = -1.25 x 2^1, "
                               "and fp16's bias is 15.")
    return Feedback(False, f"your bits are {got!r}: sign and exponent are right, the mantissa is off "
                           "(1.25 = 1 + 1/4: which mantissa bit is worth 1/4?).")


def _rounds_to(answer: float, expected: float, least_digits: int) -> bool:
    """answer is expected rounded to least_digits or more significant digits (up to float32 noise: 0.1001 as
    torch.tensor(0.1001) is 0.10010000318...)."""
    return any(math.isclose(answer, float(f"{expected:.{digits - 1}e}"), rel_tol=1e-7)
               for digits in range(least_digits, 18))


def _bf16_stored_0_1(answer: Any) -> Feedback:
    expected = stored_value(0.1, torch.bfloat16)
    if not is_number(answer):
        return Feedback(False, "give the stored value as a number (a float).")
    # 4 significant digits tell it from 0.1 and from its neighbours, and are what torch prints: tensor(0.1001)
    if answer == expected or _rounds_to(answer, expected, least_digits=4):
        return Feedback(True, f"bf16 keeps 8 significant bits: 0.1 becomes exactly {expected!r} "
                              f"(error {expected - 0.1:+.2e}).")
    if answer == 0.1:
        return Feedback(False, "0.1 has no exact binary form in any float format; bf16 keeps its nearest value.")
    if answer == stored_value(0.1, torch.float16):
        return Feedback(False, "that is what fp16 stores (10 mantissa bits); bf16 has only 7.")
    if math.isclose(answer, expected, rel_tol=0.01):
        return Feedback(False, f"close ({answer!r}), but not the stored value rounded: it is "
                               f"{float(f'{expected:.3e}')!r} to 4 digits. Use helper.stored_value or work out "
                               "the 7 mantissa bits.")
    return Feedback(False, f"{answer!r} is not within 1 % of 0.1; bf16 only rounds to its nearest value.")


def _int8_range(answer: Any) -> Feedback:
    info = torch.iinfo(torch.int8)
    values = as_tensor(answer) if not isinstance(answer, str) else None
    if values is None or values.shape != (2,):
        return Feedback(False, "give two numbers (smallest, largest), as a tuple or a list.")
    answer = tuple(int(v) if v == int(v) else v for v in values.tolist())
    if tuple(answer) == (info.max, info.min):
        return Feedback(False, "right numbers, wrong order: smallest first, then largest.")
    if tuple(answer) == (info.min, info.max):
        return Feedback(True, f"two's complement with 8 bits: {info.min}..{info.max} (one more negative value).")
    if tuple(answer) == (0, 255):
        return Feedback(False, "that is uint8; int8 spends one bit on the sign.")
    if tuple(answer) == (-127, 127):
        return Feedback(False, "two's complement has one more negative value than positive (10000000 is ...?).")
    return Feedback(False, f"{answer} is not the int8 range; try torch.iinfo(torch.int8).")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "01.bf16_memory_7b": _bf16_memory_7b,
    "01.fp16_bits_of_minus_2_5": _fp16_bits_of_minus_2_5,
    "01.bf16_stored_0_1": _bf16_stored_0_1,
    "01.int8_range": _int8_range,
}
