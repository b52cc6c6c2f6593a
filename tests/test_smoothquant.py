import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helper.smoothquant import (W8A8FakeLinear, activation_channel_absmax, fake_int8_rows, smooth_model,
                                smoothing_scales, w8a8_model)


def _tiny_llama(outliers=True):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    if outliers:  # real LLMs have a few huge activation channels: plant them in the norms
        with torch.no_grad():
            for block in model.model.layers:
                block.input_layernorm.weight[:2] = 40.0
                block.post_attention_layernorm.weight[:2] = 40.0
    return model


def _windows(n=4, seed=0):
    return torch.randint(0, 128, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_scales_follow_the_paper():
    scales = smoothing_scales(torch.tensor([16.0, 1.0, 4.0]), torch.tensor([0.25, 1.0, 4.0]), 0.5)
    assert torch.allclose(scales, torch.tensor([8.0, 1.0, 1.0]))
    assert torch.allclose(smoothing_scales(torch.tensor([16.0]), torch.tensor([0.25]), 1.0), torch.tensor([16.0]))
    assert torch.isfinite(smoothing_scales(torch.zeros(3), torch.zeros(3))).all()
    with pytest.raises(ValueError, match="alpha must be in"):
        smoothing_scales(torch.ones(2), torch.ones(2), 1.5)
    with pytest.raises(ValueError, match="one maximum per channel"):
        smoothing_scales(torch.ones(2), torch.ones(3))


def test_smoothing_leaves_the_fp32_model_unchanged_and_flattens_activations():
    model = _tiny_llama()
    ids = _windows(2, seed=1)
    absmax = activation_channel_absmax(model, _windows())
    smoothed = smooth_model(copy.deepcopy(model), absmax, 0.5)
    reference = model(input_ids=ids).logits
    assert torch.allclose(smoothed(input_ids=ids).logits, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    after = activation_channel_absmax(smoothed, _windows())
    name = "model.layers.0.self_attn.q_proj"
    spread = lambda t: (t.max() / t.median()).item()  # noqa: E731
    assert spread(after[name]) < spread(absmax[name]) / 4


def test_smoothquant_w8a8_beats_naive_w8a8_when_activations_have_outliers():
    model = _tiny_llama()
    ids = _windows(4, seed=2)
    reference = model(input_ids=ids).logits
    absmax = activation_channel_absmax(model, _windows())
    errors = {}
    for mode in ("per_token", "per_tensor"):
        naive = w8a8_model(copy.deepcopy(model), mode, absmax)
        smoothed = smooth_model(copy.deepcopy(model), absmax, 0.5)
        smooth = w8a8_model(smoothed, mode, activation_channel_absmax(smoothed, _windows()))
        errors[mode] = [(m(input_ids=ids).logits - reference).pow(2).mean().item() for m in (naive, smooth)]
        assert errors[mode][1] < errors[mode][0], mode


def test_fake_int8_rows_and_layer():
    x = torch.tensor([[1.0, -0.5, 0.25], [127.0, 1.0, 0.4]])
    assert torch.equal(fake_int8_rows(x)[1], torch.tensor([127.0, 1.0, 0.0]))  # 0.4 rounds to 0 at step 1
    assert torch.allclose(fake_int8_rows(x)[0], x[0], atol=1 / 254)
    layer = torch.nn.Linear(3, 2)
    fake = W8A8FakeLinear(layer)
    assert torch.allclose(fake(x), layer(x), atol=0.5)
    with pytest.raises(ValueError, match="activations must be one of"):
        W8A8FakeLinear(layer, "per_channel")
    with pytest.raises(ValueError, match="need act_absmax"):
        W8A8FakeLinear(layer, "per_tensor")
    with pytest.raises(ValueError, match="need calibrated maxima"):
        w8a8_model(_tiny_llama(), "per_tensor")
    with pytest.raises(ValueError, match="no calibration data"):
        activation_channel_absmax(_tiny_llama(), torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no activation maxima"):
        smooth_model(_tiny_llama(), {})


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("call, message", [
    (lambda: smoothing_scales(torch.tensor([1.0, NAN]), torch.ones(2)), "act_absmax contains NaN or Inf"),
    (lambda: smoothing_scales(torch.ones(2), torch.tensor([INF, 1.0])), "weight_absmax contains NaN or Inf"),
    (lambda: smoothing_scales(torch.tensor([-1.0, 1.0]), torch.ones(2)), "act_absmax holds maxima of |x|"),
    (lambda: smoothing_scales(torch.ones(2), torch.ones(2), alpha=NAN), "alpha must be a finite number"),
    (lambda: smoothing_scales([1.0], torch.ones(1)), "act_absmax must be a torch.Tensor"),
    (lambda: smooth_model(_tiny_llama(), {"model.layers.0.self_attn.q_proj": torch.full((64,), NAN)}),
     r"act_absmax\['model.layers.0.self_attn.q_proj'\] contains NaN or Inf"),
    (lambda: smooth_model(_tiny_llama(), [1.0]), "act_absmax must be a dict"),
    (lambda: smooth_model(_tiny_llama(), {}, alpha=1.5), r"alpha must be in \[0.0, 1.0\]"),
    (lambda: W8A8FakeLinear(torch.nn.Linear(3, 2), "per_tensor", NAN), "act_absmax must be a finite number"),
    (lambda: W8A8FakeLinear(torch.nn.Linear(3, 2), "per_tensor", INF), "act_absmax must be a finite number"),
    (lambda: W8A8FakeLinear(torch.nn.Linear(3, 2), "per_tensor", -1.0), "act_absmax must be >= 0"),
    (lambda: W8A8FakeLinear("linear"), "linear must be an nn.Linear"),
    (lambda: W8A8FakeLinear(torch.nn.Linear(3, 2))(torch.ones(1, 3, dtype=torch.long)),
     "x must be floating-point activations"),
    (lambda: fake_int8_rows(torch.tensor([[1.0, NAN]])), "x contains NaN or Inf"),
    (lambda: fake_int8_rows(torch.ones(1, 2), NAN), "absmax must be a finite number"),
    (lambda: w8a8_model(_tiny_llama(), "per_row"), "activations must be one of"),
    (lambda: activation_channel_absmax(_tiny_llama(), torch.full((1, 4), 128)),
     r"windows must be token ids in 0..127, got ids from 128 to 128"),
    (lambda: activation_channel_absmax(_tiny_llama(), _windows(), batch_size=0), "batch_size must be an integer >= 1"),
    (lambda: activation_channel_absmax(_tiny_llama(), torch.ones(2, 4)), "windows must hold integer token ids"),
], ids=["nan-act", "inf-weight", "negative-act", "nan-alpha", "list-act", "smooth-nan", "smooth-list",
        "smooth-alpha", "w8a8-nan", "w8a8-inf", "w8a8-negative", "w8a8-string", "w8a8-int-x", "rows-nan",
        "rows-absmax-nan", "w8a8-model-mode", "ids-beyond-vocab", "batch-zero", "float-ids"])
def test_non_finite_or_odd_inputs_never_reach_the_model(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_smooth_model_with_a_nan_leaves_the_model_untouched():
    model = _tiny_llama()
    absmax = activation_channel_absmax(model, _windows())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    absmax[list(absmax)[-1]] = absmax[list(absmax)[-1]].clone().fill_(NAN)
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        smooth_model(model, absmax)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_w8a8_layer_checks_the_activations_it_gets():
    layer = W8A8FakeLinear(torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"x must end in 8 features, got shape \(3, 5\)"):
        layer(torch.ones(3, 5))
    with pytest.raises(ValueError, match="x is torch.float64; this simulation computes in torch.float32"):
        layer(torch.ones(3, 8, dtype=torch.float64))


def test_fake_int8_rows_refuses_a_negative_absmax_tensor():
    with pytest.raises(ValueError, match=r"absmax holds maxima of \|x\|, which cannot be negative"):
        fake_int8_rows(torch.ones(2, 3), torch.tensor(-1.0))
