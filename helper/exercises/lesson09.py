"""Lesson 09's checkers: the bandwidth bound of decoding, the arithmetic intensity of prefill, a KV cache,
and unpacking a GPTQ qweight word with your own function.

Answers rounded to the precision the lesson asks for are right; the usual slips (bits for bytes, 4 bits for
Q4_0's 4.5, attention heads for KV heads, K without V) get a message that names them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..checkpoint_export import unpack_int32
from .core import Feedback, as_array, call_learner, is_number, rounded_to_own_decimals

__all__ = ["CHECKERS", "qweight_hidden_words"]

# Exercise 1: a 7-billion-parameter model in Q4_0 (4.5 bits per weight) on a laptop with 60 GB/s.
_PARAMETERS, _BITS, _BANDWIDTH = 7e9, 4.5, 60e9


def _decode_bound(answer: Any) -> Feedback:
    expected = _BANDWIDTH / (_PARAMETERS * _BITS / 8)  # 15.24 tokens/s
    if not is_number(answer):
        return Feedback(False, "give the bound in tokens per second, as a number.")
    rounded = rounded_to_own_decimals(answer, expected, min_decimals=1)
    if rounded:
        return Feedback(True, f"60e9 B/s / (7e9 x 4.5 / 8 B) = {expected:.2f} tokens/s: no kernel decodes faster.")
    if rounded is None:
        return Feedback(False, f"{answer} is {expected:.2f} rounded too far: give one decimal.")
    if math.isclose(answer, expected / 8, rel_tol=0.01):
        return Feedback(False, "4.5 is bits per weight: divide by 8 to get bytes per weight.")
    if math.isclose(answer, _BANDWIDTH / (_PARAMETERS * 4 / 8), rel_tol=0.01):
        return Feedback(False, "Q4_0 stores 4.5 bits per weight, not 4: each block of 32 also holds an fp16 scale.")
    if math.isclose(answer, _BANDWIDTH / (_PARAMETERS * 2), rel_tol=0.01):
        return Feedback(False, "that is the fp16 model (2 bytes per weight); this one is Q4_0.")
    return Feedback(False, f"{answer} is not it: tokens/s <= bandwidth / bytes of weights read per token.")


def _prefill_intensity(answer: Any) -> Feedback:
    tokens, bytes_per_weight = 256, 1  # a 256-token prompt through int8 weights
    expected = 2 * tokens / bytes_per_weight
    if not is_number(answer):
        return Feedback(False, "give the intensity in FLOPs per byte, as a number.")
    if math.isclose(answer, expected, rel_tol=1e-6):
        return Feedback(True, "each weight byte is read once and used by 256 rows: 2 x 256 / 1 = 512 FLOP/byte, "
                              "right of this machine's ridge point: compute-bound.")
    if math.isclose(answer, tokens / bytes_per_weight, rel_tol=1e-6):
        return Feedback(False, "a multiply-accumulate is 2 FLOPs (one multiply, one add).")
    if math.isclose(answer, 2.0, rel_tol=1e-6):
        return Feedback(False, "that is decoding (one row); a prefill of 256 tokens reuses each weight 256 times.")
    if math.isclose(answer, 2 * tokens / 4, rel_tol=1e-6):
        return Feedback(False, "int8 weights are 1 byte each, not 4.")
    return Feedback(False, f"{answer} is not it: intensity = 2 x rows / bytes per weight.")


def _kv_cache(answer: Any) -> Feedback:
    layers, kv_heads, head_dim, tokens, value_bytes = 30, 3, 64, 2048, 2
    expected = 2 * layers * kv_heads * head_dim * tokens * value_bytes  # 47,185,920
    if not is_number(answer):
        return Feedback(False, "give the size in bytes, as a number.")
    if answer == expected:
        return Feedback(True, f"2 (K and V) x 30 x 3 x 64 x 2048 x 2 B = {expected:,} bytes, about 47 MB.")
    if answer == expected // 2:
        return Feedback(False, "the cache holds both K and V: a factor 2.")
    if answer == expected * 3:
        return Feedback(False, "SmolLM2 has 9 query heads but only 3 KV heads (grouped-query attention).")
    if answer == expected * 2:
        return Feedback(False, "fp16 values are 2 bytes each, not 4.")
    return Feedback(False, f"{answer} is not it: 2 x layers x KV heads x head_dim x tokens x bytes per value.")


def qweight_hidden_words() -> list[int]:
    """The hidden qweight words: int32 values as Python ints, negative ones (top nibble >= 8) included."""
    generator = torch.Generator().manual_seed(9)
    words = torch.randint(-(1 << 31), 1 << 31, (6,), generator=generator, dtype=torch.int64).tolist()
    return words + [0x76543210, -1]


def _unpack_qweight_word(answer: Any) -> Feedback:
    for word in qweight_hidden_words():
        expected = unpack_int32(torch.tensor([word], dtype=torch.int32), 4, dim=0).tolist()
        result, failure = call_learner(answer, "unpack_word", word, case=f"on the word {word}:",
                                       returns="the 8 codes")
        if failure:
            return failure
        array, problem = as_array(result, "8 codes")
        if problem:
            return Feedback(False, problem)
        got = array.reshape(-1).tolist()
        if len(got) != 8:
            return Feedback(False, f"return 8 codes for one 32-bit word, got {len(got)}.")
        if got == expected:
            continue
        if got == expected[::-1]:
            return Feedback(False, "the order is reversed: code k sits in bits 4k..4k+3, the lowest bits first.")
        if word < 0 and any(g < 0 or g > 15 for g in got):
            return Feedback(False, f"the word {word} is negative: mask each code with & 15 (or the word "
                                   "with & 0xFFFFFFFF) so the sign bits do not leak in.")
        return Feedback(False, f"for the word {word} the codes are {expected}, you returned {got}.")
    return Feedback(True, "all 8 hidden words unpack correctly, negative ones included.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "09.decode_bound": _decode_bound,
    "09.prefill_intensity": _prefill_intensity,
    "09.kv_cache": _kv_cache,
    "09.unpack_qweight_word": _unpack_qweight_word,
}
