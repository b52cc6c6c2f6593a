import pytest
import torch

import helper
from helper import QuantScheme


@pytest.fixture(scope="module")
def trained():
    x, y = helper.make_spirals()
    model = helper.make_mlp()
    helper.train_classifier(model, x, y, steps=800)
    return model, x, y, helper.make_spirals(seed=1)


def test_fp32_learns_the_spirals(trained):
    model, _, _, (x_test, y_test) = trained
    assert helper.accuracy(model, x_test, y_test) > 0.97


def test_qat_recovers_what_int3_ptq_loses(trained):
    model, x, y, (x_test, y_test) = trained
    scheme = QuantScheme(bits=3, granularity="per_channel")
    ptq = helper.accuracy(helper.ptq_weights(model, scheme), x_test, y_test)
    qat_model = helper.to_fake_quant(model, scheme)
    helper.train_classifier(qat_model, x, y, steps=300, lr=3e-3)
    qat = helper.accuracy(qat_model, x_test, y_test)
    assert qat > ptq + 0.03 and qat > 0.97


def test_fake_quant_linear_matches_ptq_before_training(trained):
    model, x, _, _ = trained
    scheme = QuantScheme(bits=4, granularity="per_channel")
    with torch.no_grad():
        assert torch.allclose(helper.to_fake_quant(model, scheme)(x), helper.ptq_weights(model, scheme)(x), atol=1e-5)
    assert isinstance(helper.to_fake_quant(model, scheme)[0], helper.FakeQuantLinear)
    assert model[0].weight.dtype == torch.float32 and not isinstance(model[0], helper.FakeQuantLinear)


def test_spirals_are_seeded_and_validated():
    assert torch.equal(helper.make_spirals(seed=2)[0], helper.make_spirals(seed=2)[0])
    with pytest.raises(ValueError, match="n_per_class >= 1"):
        helper.make_spirals(n_per_class=0)
