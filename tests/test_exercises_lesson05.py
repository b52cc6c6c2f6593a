"""Lesson 05's checkers, called with right answers and with the plausible wrong ones a learner gives."""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants

import helper
from helper.exercises.lesson05 import q4_1_hidden_blocks


def dequantize_q4_1(block):
    """The notebook's solution to exercise 2."""
    d = block[0:2].view(np.float16)[0].astype(np.float32)  # bytes 0-1: the scale d (fp16)
    m = block[2:4].view(np.float16)[0].astype(np.float32)  # bytes 2-3: the minimum m (fp16)
    nibbles = block[4:20]
    q = np.concatenate([nibbles & 15, nibbles >> 4])  # low nibbles: weights 0-15, high: 16-31
    return q.astype(np.float32) * d + m


def _fields(block):
    d = block[0:2].view(np.float16)[0].astype(np.float32)
    m = block[2:4].view(np.float16)[0].astype(np.float32)
    return d, m, block[4:20]


def _codes(nibbles):
    return np.concatenate([nibbles & 15, nibbles >> 4]).astype(np.float32)


def swapped_d_m(block):
    d, m, nibbles = _fields(block)
    return _codes(nibbles) * m + d


def without_m(block):
    d, _, nibbles = _fields(block)
    return _codes(nibbles) * d


def q4_0_rule(block):
    d, _, nibbles = _fields(block)
    return (_codes(nibbles) - 8) * d


def interleaved(block):
    d, m, nibbles = _fields(block)
    return np.stack([nibbles & 15, nibbles >> 4], axis=1).reshape(-1).astype(np.float32) * d + m


def high_nibbles_first(block):
    d, m, nibbles = _fields(block)
    return np.concatenate([nibbles >> 4, nibbles & 15]).astype(np.float32) * d + m


def big_endian(block):
    d, m = (block[i:i + 2].view(">f2")[0].astype(np.float32) for i in (0, 2))
    return _codes(block[4:20]) * d + m


def q4_0_layout(block):
    d, m, _ = _fields(block)
    return _codes(block[2:18]) * d + m


def in_float16(block):
    d, m, nibbles = _fields(block)
    return _codes(nibbles).astype(np.float16) * np.float16(d) + np.float16(m)


def high_half_wrong(block):
    values = dequantize_q4_1(block)
    values[16:] *= 1.5
    return values


@pytest.mark.parametrize("answer", [
    dequantize_q4_1,
    lambda b: torch.from_numpy(dequantize_q4_1(b)),
    lambda b: dequantize_q4_1(b).astype(np.float64),
    lambda b: dequantize_q4_1(b).tolist(),
    lambda b: helper.gguf_io.dequantize_q4_1(b),
    lambda b: quants.dequantize(b, GGMLQuantizationType.Q4_1).reshape(-1),
], ids=["solution", "tensor", "float64", "list", "helper", "gguf"])
def test_dequantize_q4_1_accepts_right_functions(answer):
    feedback = helper.evaluate("05.dequantize_q4_1", answer)
    assert feedback.correct, feedback.message


@pytest.mark.parametrize("answer, hint", [
    (swapped_d_m, "d and m are swapped"),
    (without_m, "the minimum m is missing"),
    (q4_0_rule, "Q4_0 rule"),
    (interleaved, "not weights 2j and 2j + 1"),
    (high_nibbles_first, "weights 0-15 are the LOW nibbles"),
    (big_endian, "little-endian fp16"),
    (q4_0_layout, "nibbles start at byte 4"),
    (in_float16, "computed in float16"),
    (high_half_wrong, "weights 0-15 are right, 16-31 are not: weight 16"),
    (lambda b: _codes(b[4:20]), "these are the 4-bit codes"),
    (lambda b: (b[4:20] & 15).astype(np.float32), "16 values, one per byte"),
    (lambda b: dequantize_q4_1(b).reshape(2, 16), "shape (32,)"),
    (lambda b: b[99], "raised IndexError"),
    (lambda b: None, "returned None"),
    (lambda b: "x = q * d + m", "returned a string"),
    (lambda b: [[1.0], [2.0, 3.0]], "ragged list"),
    (dequantize_q4_1(q4_1_hidden_blocks()[0]), "pass your function itself"),
], ids=["swapped", "no-m", "q4_0", "interleaved", "high-first", "big-endian", "q4_0-layout", "fp16",
        "high-half", "codes", "16-values", "2-d", "raises", "none", "string", "ragged", "not-a-function"])
def test_dequantize_q4_1_names_what_is_wrong(answer, hint):
    feedback = helper.evaluate("05.dequantize_q4_1", answer)
    assert not feedback.correct
    assert hint in feedback.message, feedback.message
    if callable(answer):
        assert feedback.message.startswith("hidden block 1 of 6 (d = ")


def test_hidden_blocks_decode_the_same_in_helper_and_gguf():
    blocks = np.stack(q4_1_hidden_blocks())
    assert blocks.shape == (6, 20)
    ours = helper.gguf_io.dequantize_q4_1(blocks)
    assert np.array_equal(ours, quants.dequantize(blocks, GGMLQuantizationType.Q4_1).reshape(-1))
    assert np.isfinite(ours).all()
    minimums = blocks[:, 2:4].copy().view(np.float16).ravel()
    assert (minimums < 0).sum() == 5 and (minimums > 0).sum() == 1  # a positive minimum catches "q * d - |m|"


@pytest.mark.parametrize("exercise, answer", [
    ("05.q4_1_weight", -0.015625),
    ("05.q4_1_weight", -0.0156),  # rounded to 4 decimals
    ("05.q4_1_weight", -0.01563),
    ("05.q4_1_weight", np.float32(-0.015625)),
    ("05.nf4_double_quant_bits", 4.127),  # as the lesson prints it
    ("05.nf4_double_quant_bits", 4.1270),
    ("05.nf4_double_quant_bits", 4.12695),
    ("05.nf4_double_quant_bits", 4 + 8 / 64 + 32 / (64 * 256)),
    ("05.e2m1_value", 6),
    ("05.e2m1_value", 6.0),
    ("05.e2m1_value", torch.tensor(6.0)),
])
def test_right_answers_are_accepted_at_the_printed_precision(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message


@pytest.mark.parametrize("exercise, answer, hint", [
    ("05.q4_1_weight", 0.171875, "minimum m"),
    ("05.q4_1_weight", 0.046875, "Q4_0 rule"),
    ("05.q4_1_weight", 0.359375, "already negative"),
    ("05.q4_1_weight", 11 * -0.1875 + 0.015625, "swapped"),
    ("05.q4_1_weight", -0.016, "rounded too far"),
    ("05.q4_1_weight", "-0.015625", "as a number"),
    ("05.nf4_double_quant_bits", 4.5, "without double"),
    ("05.nf4_double_quant_bits", 4.125, "own fp32 scale"),
    ("05.nf4_double_quant_bits", 4.13, "rounded to 2 decimals, but 4.125"),
    ("05.nf4_double_quant_bits", 4.1, "rounded to 1 decimal, but 4.125"),
    ("05.nf4_double_quant_bits", 4.126, "cut off, not rounded"),
    ("05.nf4_double_quant_bits", 4.25, "32 / (64 x 256)"),
    ("05.e2m1_value", 12, "bias of 1"),
    ("05.e2m1_value", 4, "mantissa bit"),
    ("05.e2m1_value", 1.0, "normalised codebook"),
    ("05.e2m1_value", -6, "sign"),
    ("05.e2m1_value", 3, "bias is 1, not 2"),
    ("05.e2m1_value", 7, "unsigned integer"),
    ("05.e2m1_value", 5, "is not it"),
])
def test_wrong_answers_say_what_is_off(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message, feedback.message
