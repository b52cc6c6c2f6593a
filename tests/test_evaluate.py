import pytest
import torch

import helper


def test_logit_error_in_float32():
    reference = torch.tensor([1.0, 2.0, 3.0])
    other = torch.tensor([1.0, 2.5, 2.0], dtype=torch.bfloat16)
    assert helper.logit_error(reference, other) == {"mean_abs": 0.5, "max_abs": 1.0}


def test_mean_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert helper.mean_cosine(a, b) == pytest.approx(0.5)


def test_weight_differences_are_zero_for_a_copy():
    import copy

    model = helper.DummyModel()
    assert set(helper.weight_differences(model, copy.deepcopy(model)).values()) == {0.0}


@pytest.mark.parametrize("call, message", [
    (lambda: helper.logit_error(torch.zeros(2), torch.zeros(3)), "shapes differ"),
    (lambda: helper.mean_cosine(torch.zeros(0, 2), torch.zeros(0, 2)), "empty"),
    (lambda: helper.weight_differences(helper.DummyModel(), torch.nn.Linear(2, 2)), "differ in structure"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
