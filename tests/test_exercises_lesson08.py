"""Lesson 08's checkers, called with right answers and with the plausible wrong ones a learner gives."""

import pytest

import helper
from helper.exercises.lesson08 import MXFP4_BLOCK


def decode_by_hand():
    """The notebook's solution to exercise 1, written without helper."""
    scale = 2.0 ** (MXFP4_BLOCK["scale_code"] - 127)
    values = []
    for code in MXFP4_BLOCK["codes"]:
        sign, exponent, mantissa = code >> 3, (code >> 1) & 3, code & 1
        magnitude = mantissa / 2 if exponent == 0 else (1 + mantissa / 2) * 2 ** (exponent - 1)
        values.append((-magnitude if sign else magnitude) * scale)
    return values


def test_right_answers():
    assert helper.evaluate("08-mxfp4-block", decode_by_hand()).correct
    assert decode_by_hand() == [0.75, -0.125, 0.0625, 0.0, -0.75, 0.375, 0.1875, -0.25]
    assert helper.evaluate("08-nvfp4-bits", 4.5 + 32 / (1536 * 576)).correct
    assert helper.evaluate("08-kv-bytes", 2 * 32 * 8 * 128 * 32768 * 2).correct


@pytest.mark.parametrize("exercise,answer,hint", [
    ("08-mxfp4-block", [v * 8 for v in decode_by_hand()], "multiply each by the shared scale"),
    ("08-mxfp4-block", [v / 2 for v in decode_by_hand()], "off by a factor 2"),
    ("08-mxfp4-block", [abs(v) for v in decode_by_hand()], "sign"),
    ("08-mxfp4-block", [1, 2], "8 decoded values"),
    ("08-mxfp4-block", [0.0] * 8, "decode each code"),
    ("08-nvfp4-bits", 4.5, "fp32 scale of the whole tensor"),
    ("08-nvfp4-bits", 4.25, "MXFP4"),
    ("08-nvfp4-bits", 6.0 + 32 / (1536 * 576), "E4M3, 8 bits"),
    ("08-nvfp4-bits", "4.5", "as a number"),
    ("08-nvfp4-bits", 5.0, "bits = 4"),
    ("08-kv-bytes", 32 * 8 * 128 * 32768 * 2, "keys AND values"),
    ("08-kv-bytes", 2 * 32 * 32 * 128 * 32768 * 2, "8 KV heads"),
    ("08-kv-bytes", 2 * 32 * 8 * 128 * 32768 * 4, "2 bytes"),
    ("08-kv-bytes", 4.0, "GiB"),
    ("08-kv-bytes", 12345, "bytes = 2"),
])
def test_wrong_answers_get_specific_hints(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct and hint in feedback.message
