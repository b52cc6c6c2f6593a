"""Lesson 09's checkers, called with right answers and with the plausible wrong ones a learner gives."""

import pytest
import torch

import helper
from helper.exercises.lesson09 import qweight_hidden_words


def _verdict(exercise, answer):
    return helper.evaluate(exercise, answer)


@pytest.mark.parametrize("answer", [15.2, 15.24, 15.238])
def test_decode_bound_right(answer):
    assert _verdict("09.decode_bound", answer).correct


@pytest.mark.parametrize("answer, words", [(15.0, "rounded too far"), (1.905, "divide by 8"),
                                           (17.14, "not 4"), (4.286, "fp16"), (20.0, "not it"),
                                           ("fast", "as a number")])
def test_decode_bound_slips(answer, words):
    feedback = _verdict("09.decode_bound", answer)
    assert not feedback.correct and words in feedback.message


def test_prefill_intensity():
    assert _verdict("09.prefill_intensity", 512).correct
    for answer, words in [(256, "2 FLOPs"), (2, "decoding"), (128, "1 byte"), (7, "not it")]:
        feedback = _verdict("09.prefill_intensity", answer)
        assert not feedback.correct and words in feedback.message


def test_kv_cache():
    assert _verdict("09.kv_cache", helper.kv_cache_bytes(30, 3, 64, 2048, 2)).correct
    for answer, words in [(23_592_960, "both K and V"), (141_557_760, "3 KV heads"), (94_371_840, "2 bytes"),
                          (5, "not it")]:
        feedback = _verdict("09.kv_cache", answer)
        assert not feedback.correct and words in feedback.message


def unpack_word(word):
    """The notebook's solution to exercise 4."""
    return [(word >> (4 * k)) & 15 for k in range(8)]


def test_unpack_qweight_word_right():
    assert _verdict("09.unpack_qweight_word", unpack_word).correct
    assert _verdict("09.unpack_qweight_word", lambda w: torch.tensor(unpack_word(w))).correct
    assert any(word < 0 for word in qweight_hidden_words())


@pytest.mark.parametrize("answer, words", [
    (lambda w: unpack_word(w)[::-1], "reversed"),
    (lambda w: [(w >> (4 * k)) & 15 for k in range(7)] + [w >> 28], "negative"),  # the top code unmasked
    (lambda w: unpack_word(w)[:4], "8 codes"),
    (lambda w: None, "returned None"),
    (lambda w: 1 / 0, "ZeroDivisionError"),
    (lambda w: [0] * 8, "the codes are"),
    (unpack_word(5), "function itself"),
])
def test_unpack_qweight_word_slips(answer, words):
    feedback = _verdict("09.unpack_qweight_word", answer)
    assert not feedback.correct and words in feedback.message
