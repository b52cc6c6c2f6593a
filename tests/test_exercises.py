import pytest
import torch

import helper


@pytest.mark.parametrize("exercise, answer", [
    ("01.bf16_memory_7b", 14_000_000_000),
    ("01.fp16_bits_of_minus_2_5", "1 10000 0100000000"),
    ("01.bf16_stored_0_1", 0.10009765625),
    ("01.int8_range", (-128, 127)),
    ("02.t5_bf16_footprint", 153_922_304),
    ("02.dummy_layer_most_changed", "linear_1"),
    ("02.blip_bytes_not_halved", 4096),
    ("06.hessian", [[20 / 3, 4 / 3], [4 / 3, 10 / 3]]),
    ("06.smoothquant_scales", [8.0, 1.0, 1.0]),
    ("06.mixed_bits_down_int8", 5.255),
])
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message
    assert str(feedback).startswith("Right!")


@pytest.mark.parametrize("exercise, answer, hint", [
    ("01.bf16_memory_7b", 14, "size in GB"),
    ("01.bf16_memory_7b", 28_000_000_000, "FP32 size"),
    ("01.bf16_memory_7b", 112_000_000_000, "counts bits"),
    ("01.bf16_memory_7b", "14GB", "number of bytes"),
    ("01.fp16_bits_of_minus_2_5", "0 10000 0100000000", "sign bit"),
    ("01.fp16_bits_of_minus_2_5", "1 01111 0100000000", "exponent is off"),
    ("01.fp16_bits_of_minus_2_5", "1 10000 1000000000", "mantissa is off"),
    ("01.fp16_bits_of_minus_2_5", "1100", "16 bits"),
    ("01.bf16_stored_0_1", 0.1, "no exact binary form"),
    ("01.bf16_stored_0_1", helper.stored_value(0.1, torch.float16), "what fp16 stores"),
    ("01.bf16_stored_0_1", 0.1001, "close"),
    ("01.int8_range", (0, 255), "uint8"),
    ("01.int8_range", (-127, 127), "one more negative"),
    ("01.int8_range", ..., "replace ..."),
    ("02.t5_bf16_footprint", 307_844_608, "fp32 footprint"),
    ("02.dummy_layer_most_changed", "layernorm_1", "does not change at all"),
    ("02.dummy_layer_most_changed", "head", "another layer changes more"),
    ("02.dummy_layer_most_changed", "linear_3", "not a DummyModel layer"),
    ("02.blip_bytes_not_halved", 2048, "half of it"),
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
