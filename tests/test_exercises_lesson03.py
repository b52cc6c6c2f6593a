"""Lesson 03's checkers, called with right answers and with the plausible wrong ones a learner gives."""

import numpy as np
import pytest
import torch

import helper


def solution(weight, bits):
    """The notebook's solution to exercise 2."""
    q_max = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=1, keepdim=True) / q_max
    codes = torch.clamp(torch.round(weight / scale), -q_max - 1, q_max)
    return codes, scale


def hard_coded_int4(weight, bits):
    q_max = 7  # passes at 4 bits only
    scale = weight.abs().amax(dim=1, keepdim=True) / q_max
    return torch.clamp(torch.round(weight / scale), -q_max - 1, q_max), scale


def _scale(weight, bits):
    return weight.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)


@pytest.mark.parametrize("exercise, answer", [
    ("03.scale_zero_point", (0.015686, 64)),  # the value section 2 prints and the solution gives
    ("03.scale_zero_point", (4 / 255, 64)),
    ("03.scale_zero_point", [0.0157, 64]),  # rounded to 3 significant digits, as a list
    ("03.scale_zero_point", (0.015686, 64.0)),
    ("03.scale_zero_point", (torch.tensor(0.015686), torch.tensor(64))),  # float32 from a tensor
    ("03.scale_zero_point", (np.float64(4 / 255), np.int64(64))),
    ("03.per_channel_quantize", solution),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0].to(torch.int8), solution(w, bits)[1].flatten())),
    ("03.per_channel_quantize", lambda w, bits: tuple(t.numpy() for t in solution(w, bits))),
    ("03.per_channel_quantize", lambda w, bits: [solution(w, bits)[0].tolist(), solution(w, bits)[1].tolist()]),
    ("03.sqnr_8bit_sine", 49.92),  # with the rounded constants 6.02 and 1.76
    ("03.sqnr_8bit_sine", 49.93),
    ("03.sqnr_8bit_sine", 49.9),
    ("03.sqnr_8bit_sine", 50),
    ("03.fixed_point_multiplier", (1832519380, 9)),
    ("03.fixed_point_multiplier", [1832519380, 9.0]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message


def test_the_checker_agrees_with_the_helper_it_teaches():
    scale, zero_point = helper.choose_qparams_asymmetric(torch.tensor(-1.0), torch.tensor(3.0), bits=8)
    assert helper.evaluate("03.scale_zero_point", (scale.item(), zero_point.item())).correct
    assert helper.evaluate("03.fixed_point_multiplier", helper.quantize_multiplier(0.05 * 0.004 / 0.12)).correct
    assert helper.evaluate("03.sqnr_8bit_sine", helper.sqnr_full_scale_sine_db(8)).correct


@pytest.mark.parametrize("exercise, answer, hint", [
    # exercise 1: rounding slips are named as rounding, formula slips as formula
    ("03.scale_zero_point", (0.015685, 64), "rounding is not"),
    ("03.scale_zero_point", (0.0156, 64), "rounding is not"),
    ("03.scale_zero_point", (0.02, 64), "at least 3 significant digits"),
    ("03.scale_zero_point", (4 / 256, 64), "255"),
    ("03.scale_zero_point", (0.015625, 64), "255"),
    ("03.scale_zero_point", (3 / 255, 64), "not 3"),
    ("03.scale_zero_point", (63.75, 64), "1 / scale"),
    ("03.scale_zero_point", (0.5, 64), "scale = (rmax - rmin) / (qmax - qmin)"),
    ("03.scale_zero_point", (4 / 255, 63), "rounds to 64"),
    ("03.scale_zero_point", (0.015686, 63.75), "must be an integer"),
    ("03.scale_zero_point", (0.015686, -64), "sign of the zero-point"),
    ("03.scale_zero_point", (0.015686, 10), "zero_point 10 is not"),
    ("03.scale_zero_point", "0.015686, 64", "give two numbers"),
    ("03.scale_zero_point", (0.015686,), "give two numbers"),
    # exercise 2: the learner's function is run at 4, 8 and 3 bits
    ("03.per_channel_quantize", hard_coded_int4, "not a fixed 7"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0] * _scale(w, bits), _scale(w, bits)),
     "dequantized weights"),
    ("03.per_channel_quantize", lambda w, bits: (w, _scale(w, bits)), "dequantized weights"),
    ("03.per_channel_quantize", lambda w, bits: (w, w.abs().max() / 7), "one scale"),
    ("03.per_channel_quantize", lambda w, bits: (w / _scale(w, bits), _scale(w, bits)), "not integers"),
    ("03.per_channel_quantize", lambda w, bits: (torch.round(w / _scale(w, bits) * 1.5), _scale(w, bits)),
     "clamp after rounding"),
    ("03.per_channel_quantize", lambda w, bits: (torch.floor(w / _scale(w, bits)).clamp(-2 ** (bits - 1),
                                                                                        2 ** (bits - 1) - 1),
                                                 _scale(w, bits)), "codes differ"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0], w.amax(1, keepdim=True) / (2 ** (bits - 1) - 1)),
     "max(|row|)"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0], w.abs().amax(1, keepdim=True) / 2 ** (bits - 1)),
     "divide by q_max"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0], w.abs().amax(0)), "one per row"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0].T, solution(w, bits)[1]), "weight's shape"),
    ("03.per_channel_quantize", lambda w, bits: ("codes", solution(w, bits)[1]), "is a string"),
    ("03.per_channel_quantize", lambda w, bits: ([[1, 2], [3]], solution(w, bits)[1]), "ragged list"),
    ("03.per_channel_quantize", lambda w, bits: (solution(w, bits)[0].to(torch.complex64), solution(w, bits)[1]),
     "complex tensor"),
    ("03.per_channel_quantize", lambda w, bits: solution(w, bits)[0], "returned one tensor"),
    ("03.per_channel_quantize", lambda w, bits: (1, 2, 3), "return a tuple (codes, scale)"),
    ("03.per_channel_quantize", lambda w, bits: 1 / 0, "raised ZeroDivisionError"),
    ("03.per_channel_quantize", lambda w, bits: solution(w, bits) if bits == 4 else 1 / 0, "bits=8 your function raised"),
    ("03.per_channel_quantize", 3, "pass your function"),
    ("03.per_channel_quantize", lambda w, bits: None, "returned None"),
    # exercise 3
    ("03.sqnr_8bit_sine", 48.16, "uniform"),
    ("03.sqnr_8bit_sine", 49.76, "6.02 dB per bit"),
    ("03.sqnr_8bit_sine", 49.925, "rounding is not"),
    ("03.sqnr_8bit_sine", 80, "far off"),
    ("03.sqnr_8bit_sine", "49.9 dB", "as a number"),
    # exercise 4
    ("03.fixed_point_multiplier", (1832519379, 9), "you truncated"),
    ("03.fixed_point_multiplier", (1832519000, 9), "-380 off"),
    ("03.fixed_point_multiplier", (0.853333, 9), "Q31 int32"),
    ("03.fixed_point_multiplier", (1832519380, -9), "to the *right*"),
    ("03.fixed_point_multiplier", (916259690, 8), "not in [0.5, 1)"),
    ("03.fixed_point_multiplier", (3579139, 0), "not in [0.5, 1)"),
    ("03.fixed_point_multiplier", (1832519380, 9.5), "whole number of bits"),
    ("03.fixed_point_multiplier", (2**30, 3), "math.frexp"),
    ("03.fixed_point_multiplier", (123, 9), "the shift is right, M0 is not"),
    ("03.fixed_point_multiplier", "1832519380 >> 9", "give two integers"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_answers_get_specific_feedback(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message


@pytest.mark.parametrize("exercise", ["03.scale_zero_point", "03.sqnr_8bit_sine", "03.fixed_point_multiplier"])
@pytest.mark.parametrize("answer", [float("nan"), float("inf"), None, ..., "x", [1, [2]], {"a": 1}, torch.ones(3)],
                         ids=["nan", "inf", "None", "ellipsis", "str", "ragged", "dict", "tensor"])
def test_odd_answers_get_feedback_not_a_traceback(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct and feedback.message
