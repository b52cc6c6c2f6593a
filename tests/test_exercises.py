import pytest
import torch

import helper


@pytest.mark.parametrize("exercise, answer", [
    ("06.hessian", [[20 / 3, 4 / 3], [4 / 3, 10 / 3]]),
    ("06.smoothquant_scales", [8.0, 1.0, 1.0]),
    ("06.mixed_bits_down_int8", 5.255),
])
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message
    assert str(feedback).startswith("Right!")


@pytest.mark.parametrize("exercise, answer, hint", [
    ("06.hessian", [[10 / 3, 2 / 3], [2 / 3, 5 / 3]], "factor 2"),
    ("06.hessian", [[20, 4], [4, 10]], "divide by n"),
    ("06.hessian", torch.ones(3, 3), "features x features"),
    ("06.hessian", "H", "2 x 2 tensor"),
    ("06.smoothquant_scales", [1 / 8, 1.0, 1.0], "upside down"),
    ("06.smoothquant_scales", [1.0], "three numbers"),
    ("06.mixed_bits_down_int8", 5.0, "codes alone"),
    ("06.mixed_bits_down_int8", 4.5, "share of the block"),
])
def test_wrong_answers_get_specific_feedback(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message


def test_check_prints_feedback(capsys):
    helper.check("01.int8_range", (-128, 127))
    assert capsys.readouterr().out.startswith("Right!")


def test_unknown_exercise():
    with pytest.raises(ValueError, match="unknown exercise '01.nope'; known: 01.bf16_memory_7b"):
        helper.evaluate("01.nope", 1)
