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
