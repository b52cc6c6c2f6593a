"""Lesson 01's checkers: right answers in every form a learner may type them, wrong ones named."""

import numpy as np
import pytest
import torch

import helper


@pytest.mark.parametrize("exercise, answer", [
    ("01.bf16_memory_7b", 14_000_000_000),
    ("01.bf16_memory_7b", 14e9),
    ("01.bf16_memory_7b", np.int64(14_000_000_000)),
    ("01.bf16_memory_7b", torch.tensor(14e9)),
    ("01.bf16_memory_7b", helper.model_memory_bytes(7_000_000_000, "BF16")),
    ("01.fp16_bits_of_minus_2_5", "1 10000 0100000000"),
    ("01.fp16_bits_of_minus_2_5", "1100000100000000"),
    ("01.fp16_bits_of_minus_2_5", "1_10000_0100000000"),
    ("01.fp16_bits_of_minus_2_5", 0b1100000100000000),
    ("01.fp16_bits_of_minus_2_5", helper.to_bits(-2.5, torch.float16)),
    ("01.bf16_stored_0_1", 0.10009765625),
    ("01.bf16_stored_0_1", 0.1001),  # as torch prints it: tensor(0.1001, dtype=torch.bfloat16)
    ("01.bf16_stored_0_1", 0.100098),
    ("01.bf16_stored_0_1", np.float32(0.10009765625)),
    ("01.bf16_stored_0_1", torch.tensor(0.1001)),
    ("01.bf16_stored_0_1", torch.tensor(0.1, dtype=torch.bfloat16)),
    ("01.bf16_stored_0_1", helper.stored_value(0.1, torch.bfloat16)),
    ("01.int8_range", (-128, 127)),
    ("01.int8_range", [-128, 127]),
    ("01.int8_range", (-128.0, 127.0)),
    ("01.int8_range", np.array([-128, 127])),
    ("01.int8_range", torch.tensor([-128, 127], dtype=torch.int8)),
    ("01.int8_range", (torch.iinfo(torch.int8).min, torch.iinfo(torch.int8).max)),
], ids=str)
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message
    assert str(feedback).startswith("Right!")


@pytest.mark.parametrize("exercise, answer, hint", [
    ("01.bf16_memory_7b", 14, "size in GB"),
    ("01.bf16_memory_7b", 28_000_000_000, "FP32 size"),
    ("01.bf16_memory_7b", 112_000_000_000, "counts bits"),
    ("01.bf16_memory_7b", "14GB", "number of bytes"),
    ("01.bf16_memory_7b", 7_000_000_000, "factor of 0.5"),
    ("01.fp16_bits_of_minus_2_5", "0 10000 0100000000", "sign bit"),
    ("01.fp16_bits_of_minus_2_5", "1 01111 0100000000", "exponent is off"),
    ("01.fp16_bits_of_minus_2_5", "1 10000 1000000000", "mantissa is off"),
    ("01.fp16_bits_of_minus_2_5", "1100", "16 bits"),
    ("01.fp16_bits_of_minus_2_5", "1 10000000 0100000", "bf16's layout"),  # -2.5 in bf16: 8 + 7
    ("01.fp16_bits_of_minus_2_5", helper.to_bits(-2.5, torch.float32), "32 bits fp32 stores"),
    ("01.fp16_bits_of_minus_2_5", -2.5, "as a string"),
    ("01.bf16_stored_0_1", 0.1, "no exact binary form"),
    ("01.bf16_stored_0_1", 0.10, "no exact binary form"),
    ("01.bf16_stored_0_1", helper.stored_value(0.1, torch.float16), "what fp16 stores"),
    ("01.bf16_stored_0_1", 0.10009, "0.1001 to 4 digits"),  # cut off, not rounded
    ("01.bf16_stored_0_1", 0.100, "no exact binary form"),
    ("01.bf16_stored_0_1", 0.5, "not within 1 %"),
    ("01.bf16_stored_0_1", "0.1001", "as a number"),
    ("01.int8_range", (0, 255), "uint8"),
    ("01.int8_range", [0, 255], "uint8"),
    ("01.int8_range", (-127, 127), "one more negative"),
    ("01.int8_range", (127, -128), "wrong order"),
    ("01.int8_range", (-128, 127, 0), "two numbers"),
    ("01.int8_range", "-128..127", "two numbers"),
    ("01.int8_range", (-256, 255), "not the int8 range"),
    ("01.int8_range", ..., "replace ..."),
], ids=str)
def test_wrong_answers_get_specific_feedback(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message
