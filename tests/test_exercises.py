import pytest
import torch

import helper


@pytest.mark.parametrize("exercise, answer", [
    ("04.pack_2bit", lambda v: (v[..., 0::4] | v[..., 1::4] << 2 | v[..., 2::4] << 4 | v[..., 3::4] << 6)),
    ("04.w4a16_layer_bytes", 552_960),
    ("04.bits_per_weight_g32", 4.5),
    ("05.q4_1_weight", -0.015625),
    ("05.nf4_double_quant_bits", 4.127),
    ("05.e2m1_value", 6),
    ("06.hessian", [[20 / 3, 4 / 3], [4 / 3, 10 / 3]]),
    ("06.smoothquant_scales", [8.0, 1.0, 1.0]),
    ("06.mixed_bits_down_int8", 5.255),
])
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message
    assert str(feedback).startswith("Right!")


@pytest.mark.parametrize("exercise, answer, hint", [
    ("04.pack_2bit", lambda v: (v[..., 3::4] | v[..., 2::4] << 2 | v[..., 1::4] << 4 | v[..., 0::4] << 6),
     "reverse order"),
    ("04.pack_2bit", lambda v: v, "expected shape"),
    ("04.pack_2bit", lambda v: None, "returned None"),
    ("04.w4a16_layer_bytes", 442_368, "packed codes only"),
    ("04.w4a16_layer_bytes", 576 * 1536 + 110_592, "two per byte"),
    ("04.bits_per_weight_g32", 4, "scales cost"),
    ("04.bits_per_weight_g32", 5, "fp32 scales"),
    ("05.q4_1_weight", 0.171875, "minimum m"),
    ("05.q4_1_weight", 0.046875, "Q4_0 rule"),
    ("05.nf4_double_quant_bits", 4.5, "without double"),
    ("05.nf4_double_quant_bits", 4.125, "own fp32 scale"),
    ("05.e2m1_value", 12, "bias of 1"),
    ("05.e2m1_value", 4, "mantissa bit"),
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
