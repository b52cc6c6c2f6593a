import torch

import helper
from helper.exercises.lesson06 import _hidden_gptq_problems


def _right_step(W, Hinv, j, scale):
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    error = (W[:, j] - q) / Hinv[j, j]
    W[:, j:] -= torch.outer(error, Hinv[j, j:])
    return W


def test_the_right_answers_pass():
    assert helper.evaluate("06.hessian", [[20 / 3, 4 / 3], [4 / 3, 10 / 3]]).correct
    assert helper.evaluate("06.smoothquant_scales", [8.0, 1.0, 1.0]).correct
    assert helper.evaluate("06.mixed_bits_down_int8", 5.255).correct
    assert helper.evaluate("06.gptq_column_step", _right_step).correct


def test_mixed_bits_names_each_slip():
    cases = {5.25: "forgot the int8 scales", 5.0: "codes alone", 5.005: "forgot the int4 scales",
             4.5: "share of the block", 5.26: "three decimals"}
    for answer, words in cases.items():
        feedback = helper.evaluate("06.mixed_bits_down_int8", answer)
        assert not feedback.correct and words in feedback.message, (answer, feedback.message)


def _no_divide(W, Hinv, j, scale):
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    W[:, j:] -= torch.outer(W[:, j] - q, Hinv[j, j:])
    return W


def _column(W, Hinv, j, scale):
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    W[:, j:] -= torch.outer((W[:, j] - q) / Hinv[j, j], Hinv[j:, j])
    return W


def _sign(W, Hinv, j, scale):
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    W[:, j:] += torch.outer((W[:, j] - q) / Hinv[j, j], Hinv[j, j:])
    return W


def _from_next(W, Hinv, j, scale):
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    W[:, j + 1:] -= torch.outer((W[:, j] - q) / Hinv[j, j], Hinv[j, j + 1:])
    return W


def _bad_rounding(W, Hinv, j, scale):
    q = torch.clamp(torch.floor(W[:, j] / scale), -8, 7) * scale
    W[:, j:] -= torch.outer((W[:, j] - q) / Hinv[j, j], Hinv[j, j:])
    return W


def _everything(W, Hinv, j, scale):
    W = _right_step(W, Hinv, j, scale)
    W[:, :j] -= 0.1  # touches the columns already quantized (right on the j = 0 problem only)
    return W


def test_gptq_step_feedback_names_the_wrong_step():
    cases = {_no_divide: "step 2 (error)", _column: "row j", _sign: "wrong sign", _from_next: "from j, not j + 1",
             _bad_rounding: "step 1 (quantize)", (lambda W, Hinv, j, scale: W): "unchanged",
             (lambda W, Hinv, j, scale: None): "returned None", "W": "function itself",
             (lambda W, Hinv, j, scale: W[:2]): "return W itself", (lambda W, Hinv, j, scale: 1 / 0): "raised",
             _everything: "columns before j"}
    for answer, words in cases.items():
        feedback = helper.evaluate("06.gptq_column_step", answer)
        assert not feedback.correct and words in feedback.message, (words, feedback.message)


def test_the_hidden_problems_are_fixed_and_well_posed():
    first, again = _hidden_gptq_problems(), _hidden_gptq_problems()
    for (W, Hinv, j, scale), (W2, Hinv2, _, _) in zip(first, again):
        assert torch.equal(W, W2) and torch.equal(Hinv, Hinv2)
        assert torch.allclose(Hinv, torch.triu(Hinv)) and (torch.diag(Hinv) > 0).all() and 0 <= j < W.shape[1]
