"""Lesson 04's checkers, called with right answers and with the plausible wrong ones a learner gives."""

import numpy as np
import pytest
import torch

import helper
from helper.exercises.core import decimals, rounded_to_own_decimals
from helper.exercises.lesson04 import pack_3bit_reference


def pack_3bit(codes):
    """The notebook's solution to exercise 2."""
    stream = 0
    for i, code in enumerate(codes.tolist()):
        stream |= code << (3 * i)  # code i at bits 3i .. 3i+2
    n_bytes = (3 * len(codes) + 7) // 8  # round up: the last byte is padded with zeros
    return torch.tensor(list(stream.to_bytes(n_bytes, "little")), dtype=torch.uint8)


def pack_3bit_torch(codes):
    """Another right solution: spread each code into 3 bits, then 8 bits into a byte, with tensor ops."""
    bits = (codes.long()[:, None] >> torch.arange(3)) & 1
    bits = torch.nn.functional.pad(bits.flatten(), (0, -3 * len(codes) % 8)).reshape(-1, 8)
    return (bits << torch.arange(8)).sum(1).to(torch.uint8)


def _stream(codes):
    stream = 0
    for i, code in enumerate(codes.tolist()):
        stream |= code << (3 * i)
    return stream


def no_padding(codes):
    return torch.tensor([(_stream(codes) >> 8 * k) & 255 for k in range(3 * len(codes) // 8)], dtype=torch.uint8)


def most_significant_first(codes):
    bits = "".join(f"{c:03b}" for c in codes.tolist())
    bits += "0" * (-len(bits) % 8)
    return torch.tensor([int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)], dtype=torch.uint8)


def no_carry(codes):
    """Forgets the bits of a code that spill into the next byte."""
    out = [0] * ((3 * len(codes) + 7) // 8)
    for i, code in enumerate(codes.tolist()):
        out[3 * i // 8] |= (code << (3 * i % 8)) & 255
    return torch.tensor(out, dtype=torch.uint8)


def two_per_byte(codes):
    padded = torch.nn.functional.pad(codes, (0, len(codes) % 2))
    return padded[0::2] | padded[1::2] << 3


def one_per_byte(codes):
    return codes.clone()


def padded_with_ones(codes):
    packed = pack_3bit(codes)
    if 3 * len(codes) % 8:
        packed[-1] |= (0xFF << (3 * len(codes) % 8)) & 0xFF
    return packed


@pytest.mark.parametrize("answer", [
    pack_3bit, pack_3bit_torch,
    lambda c: pack_3bit(c).tolist(),  # a list of ints
    lambda c: bytes(pack_3bit(c).tolist()),  # a bytes object
    lambda c: pack_3bit(c).numpy(),
], ids=["solution", "tensor-ops", "list", "bytes", "numpy"])
def test_pack_3bit_accepts_right_functions(answer):
    feedback = helper.evaluate("04.pack_3bit", answer)
    assert feedback.correct, feedback.message
    assert "8 hidden cases" in feedback.message


@pytest.mark.parametrize("answer, hint", [
    (no_padding, "15 bits need 2 bytes, not 1: round up and pad"),
    (most_significant_first, "opposite order: code 0 goes in the LOWEST 3 bits"),
    (no_carry, "cross a byte boundary"),
    (two_per_byte, "two codes per byte"),
    (one_per_byte, "one code per byte"),
    (padded_with_ones, "padding bits after the last code are not 0"),
    (lambda c: 1 / 0, "raised ZeroDivisionError"),
    (lambda c: None, "returned None"),
    (lambda c: "0b101", "returned a string"),
    (lambda c: [[1, 2], [3]], "ragged list"),
    (lambda c: pack_3bit(c).float(), "not float32"),
    (lambda c: pack_3bit(c).long(), "not int64"),
    (lambda c: pack_3bit(c)[None], "flat (1-D)"),
    (lambda c: [0.5] * ((3 * len(c) + 7) // 8), "whole numbers 0..255"),
    (pack_3bit(torch.tensor([1, 2, 3])), "pass your function itself"),
], ids=["no-padding", "msb-first", "no-carry", "two-per-byte", "one-per-byte", "ones-padding", "raises", "none",
        "string", "ragged", "float", "int64", "2-d", "fractions", "not-a-function"])
def test_pack_3bit_names_what_is_wrong(answer, hint):
    feedback = helper.evaluate("04.pack_3bit", answer)
    assert not feedback.correct
    assert hint in feedback.message, feedback.message


def test_pack_3bit_says_which_case_fails():
    message = helper.evaluate("04.pack_3bit", no_padding).message
    assert message.startswith("hidden case 3 of 8 (5 codes") and "expected bytes" in message
    # 8 codes fill 3 bytes exactly, so a solution without padding passes the first two cases
    assert helper.evaluate("04.pack_3bit", most_significant_first).message.startswith("hidden case 1 of 8")


@pytest.mark.parametrize("n", [1, 3, 5, 8, 11, 16, 21])
def test_pack_3bit_reference_is_the_little_endian_bit_stream(n):
    codes = np.random.default_rng(n).integers(0, 8, n, dtype=np.uint8)
    expected = pack_3bit(torch.from_numpy(codes))
    assert np.array_equal(pack_3bit_reference(codes), expected.numpy())
    assert pack_3bit_reference(codes).size == -(-3 * n // 8)


def test_pack_3bit_worked_example():
    # by hand: byte 0 = 1 | 0 << 3 | (3 & 0b11) << 6; byte 1 = 3 >> 2 | 2 << 1 | 7 << 4 | (6 & 1) << 7;
    # byte 2 = 6 >> 1 | 5 << 2 | 4 << 5
    codes = np.array([1, 0, 3, 2, 7, 6, 5, 4], dtype=np.uint8)
    assert pack_3bit_reference(codes).tolist() == [0b11000001, 0b01110100, 0b10010111]


@pytest.mark.parametrize("answer", [
    lambda v: v[..., 0::4] | v[..., 1::4] << 2 | v[..., 2::4] << 4 | v[..., 3::4] << 6,
    lambda v: helper.pack(v, 2),
    lambda v: (v[..., 0::4] | v[..., 1::4] << 2 | v[..., 2::4] << 4 | v[..., 3::4] << 6).tolist(),
])
def test_pack_2bit_accepts_right_functions(answer):
    feedback = helper.evaluate("04.pack_2bit", answer)
    assert feedback.correct, feedback.message


@pytest.mark.parametrize("answer, hint", [
    (lambda v: v[..., 3::4] | v[..., 2::4] << 2 | v[..., 1::4] << 4 | v[..., 0::4] << 6, "reverse order"),
    (lambda v: v, "expected shape"),
    (lambda v: None, "returned None"),
    (lambda v: "packed", "returned a string"),
    (lambda v: [[1, 2], [3]], "ragged list"),
    (lambda v: helper.pack(v, 2).float(), "not float32"),
    (lambda v: v[..., 0::4] | v[..., 1::4] << 2, "the bytes differ"),
    (lambda v: v.reshape(-1, 4).sum(), "expected shape"),
    (lambda v: v[99], "raised IndexError"),
    (3, "pass your function itself"),
])
def test_pack_2bit_names_what_is_wrong(answer, hint):
    feedback = helper.evaluate("04.pack_2bit", answer)
    assert not feedback.correct
    assert hint in feedback.message, feedback.message


@pytest.mark.parametrize("exercise, answer", [
    ("04.w4a16_layer_bytes", 552_960),
    ("04.w4a16_layer_bytes", 552_960.0),
    ("04.w4a16_layer_bytes", np.int64(552_960)),
    ("04.bits_per_weight_g32", 4.5),
    ("04.bits_per_weight_g32", torch.tensor(4.5)),
])
def test_counting_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message


@pytest.mark.parametrize("exercise, answer, hint", [
    ("04.w4a16_layer_bytes", 442_368, "packed codes only"),
    ("04.w4a16_layer_bytes", 576 * 1536 + 110_592, "two per byte"),
    ("04.w4a16_layer_bytes", 576 * 1536 * 4, "fp32 layer"),
    ("04.w4a16_layer_bytes", 442_368 + 55_296, "16-bit scales"),
    ("04.w4a16_layer_bytes", 0.553, "not megabytes"),
    ("04.w4a16_layer_bytes", "552960 B", "number of bytes"),
    ("04.bits_per_weight_g32", 4, "scales cost"),
    ("04.bits_per_weight_g32", 5, "fp32 scales"),
    ("04.bits_per_weight_g32", 20, "shared by 32"),
    ("04.bits_per_weight_g32", 0.5625, "bytes per weight"),
    ("04.bits_per_weight_g32", ..., "replace ..."),
])
def test_counting_answers_get_specific_feedback(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message, feedback.message


def test_decimals_and_rounding():
    assert [decimals(x) for x in (4.127, 4.1270, 6, 6.0, -0.015625, 0.1)] == [3, 3, 0, 0, 6, 1]
    assert rounded_to_own_decimals(4.127, 4.126953125, 3) is True
    assert rounded_to_own_decimals(4.13, 4.126953125, 3) is None  # right, but too coarse to tell from 4.125
    assert rounded_to_own_decimals(4.126, 4.126953125, 3) is False  # cut off, not rounded
