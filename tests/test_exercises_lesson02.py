"""Lesson 02's checkers: right answers in every form a learner may type them, wrong ones named."""

import numpy as np
import pytest
import torch

import helper


@pytest.mark.parametrize("exercise, answer", [
    ("02.t5_bf16_footprint", 153_922_304),
    ("02.t5_bf16_footprint", 153_922_304.0),
    ("02.t5_bf16_footprint", np.int64(153_922_304)),
    ("02.t5_bf16_footprint", torch.tensor(153_922_304)),
    ("02.t5_bf16_footprint", helper.model_memory_bytes(76_961_152, "BF16")),
    ("02.dummy_layer_most_changed", "linear_1"),
    ("02.dummy_layer_most_changed", " linear_1 "),
    ("02.dummy_layer_most_changed", "linear_1.bias"),  # the parameter that moved most, inside that layer
    ("02.blip_bytes_not_halved", 4096),
    ("02.blip_bytes_not_halved", 4096.0),
    ("02.blip_bytes_not_halved", np.int32(4096)),
], ids=str)
def test_right_answers_are_accepted(exercise, answer):
    feedback = helper.evaluate(exercise, answer)
    assert feedback.correct, feedback.message
    assert str(feedback).startswith("Right!")


@pytest.mark.parametrize("exercise, answer, hint", [
    ("02.t5_bf16_footprint", 307_844_608, "fp32 footprint"),
    ("02.t5_bf16_footprint", 76_961_152 * 16, "counts bits"),
    ("02.t5_bf16_footprint", 153.922304, "in MB"),
    ("02.t5_bf16_footprint", 0.153922304, "in GB"),
    ("02.t5_bf16_footprint", 153_922_305, "off by +1 bytes"),
    ("02.t5_bf16_footprint", "153922304", "number of bytes"),
    ("02.dummy_layer_most_changed", "layernorm_1", "does not change at all"),
    ("02.dummy_layer_most_changed", "layernorm_2.weight", "does not change at all"),
    ("02.dummy_layer_most_changed", "head", "another layer changes more"),
    ("02.dummy_layer_most_changed", "head.weight", "another layer changes more"),
    ("02.dummy_layer_most_changed", "linear_3", "not a DummyModel layer"),
    ("02.dummy_layer_most_changed", 1, "as a string"),
    ("02.blip_bytes_not_halved", 2048, "half of it"),
    ("02.blip_bytes_not_halved", 1024, "is not it"),
    ("02.blip_bytes_not_halved", "4096 B", "number of bytes"),
], ids=str)
def test_wrong_answers_get_specific_feedback(exercise, answer, hint):
    feedback = helper.evaluate(exercise, answer)
    assert not feedback.correct
    assert hint in feedback.message
