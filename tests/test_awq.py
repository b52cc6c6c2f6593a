import copy

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from helper.awq import (AWQConfig, LLAMA_SCALE_GROUPS, activation_scale, apply_scale, awq_quantize_blocks,
                        awq_quantize_model, awq_scales, rtn_weight, search_scale)
from helper.layerwise import BlockInputs, capture_block_inputs, decoder_blocks, linear_layers


def _tiny_llama(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # real norms are not all ones: make the folding visible
        for block in model.model.layers:
            block.input_layernorm.weight.uniform_(0.5, 1.5)
            block.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return model


def _windows(n=4, tokens=32, seed=1):
    return torch.randint(0, 128, (n, tokens), generator=torch.Generator().manual_seed(seed))


def test_scales_follow_the_formula():
    x = torch.tensor([[1.0, -4.0, 0.5], [3.0, 0.0, -0.5]])
    assert torch.equal(activation_scale(x), torch.tensor([2.0, 2.0, 0.5]))
    scales = awq_scales(torch.tensor([1.0, 4.0, 16.0]), 0.5)  # [1, 2, 4] / sqrt(4 * 1)
    assert torch.allclose(scales, torch.tensor([0.5, 1.0, 2.0]))
    assert torch.equal(awq_scales(torch.tensor([1.0, 4.0, 16.0]), 0.0), torch.ones(3))


def test_folding_scales_leaves_the_fp32_model_unchanged():
    model = _tiny_llama()
    ids = _windows(2)
    before = model(input_ids=ids).logits
    block = model.model.layers[0]
    for group in LLAMA_SCALE_GROUPS:
        scales = torch.rand(block.get_submodule(group.layers[0]).in_features) + 0.5
        apply_scale(block.get_submodule(group.previous), [block.get_submodule(n) for n in group.layers], scales)
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)
    with pytest.raises(ValueError, match="cannot fold scales into ReLU"):
        apply_scale(nn.ReLU(), [], torch.ones(3))


def test_alpha_zero_is_round_to_nearest_exactly():
    model = _tiny_llama()
    rtn = copy.deepcopy(model)
    config = AWQConfig(bits=4, group_size=32, alphas=(0.0,))
    awq_quantize_model(model, _windows(), config, batch_size=2)
    with torch.no_grad():
        for layer in linear_layers(rtn.model).values():
            layer.weight.copy_(rtn_weight(layer.weight, config))
    for (name, ours), (_, reference) in zip(model.named_parameters(), rtn.named_parameters()):
        assert torch.equal(ours, reference), name


def test_search_prefers_scaling_when_a_few_channels_dominate():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 64, generator=generator)
    x[:, :4] *= 30  # salient input channels
    weight = torch.randn(32, 64, generator=generator)
    scales, alpha, losses = search_scale(x, [weight], AWQConfig(bits=3, group_size=32))
    assert alpha > 0 and losses[alpha] < 0.9 * losses[0.0]
    assert scales[:4].min() > scales[4:].max()


def test_awq_lowers_the_error_of_a_tiny_llama():
    model = _tiny_llama()
    with torch.no_grad():  # plant activation outliers as real LLMs have them
        model.model.layers[0].input_layernorm.weight[:3] = 20.0
        model.model.layers[1].post_attention_layernorm.weight[:3] = 20.0
    ids = _windows(4, seed=2)
    reference = model(input_ids=ids).logits
    config = AWQConfig(bits=3, group_size=32)
    awq_model, rtn_model = copy.deepcopy(model), copy.deepcopy(model)
    results = awq_quantize_model(awq_model, _windows(8), config, batch_size=4)
    assert set(results) == {f"blocks.{i}.{g.layers[0]}" for i in range(2) for g in LLAMA_SCALE_GROUPS}
    awq_quantize_model(rtn_model, _windows(8), AWQConfig(bits=3, group_size=32, alphas=(0.0,)), batch_size=4)
    awq_error = (awq_model(input_ids=ids).logits - reference).pow(2).mean()
    rtn_error = (rtn_model(input_ids=ids).logits - reference).pow(2).mean()
    assert awq_error < rtn_error


def test_block_inputs_are_captured_per_batch_and_errors_are_clear():
    model = _tiny_llama()
    inputs = capture_block_inputs(model, _windows(5), batch_size=2)
    assert [h.shape[0] for h in inputs.hidden] == [2, 2, 1] and inputs.tokens == 5 * 32
    assert "position_embeddings" in inputs.kwargs[0]
    with pytest.raises(ValueError, match="no calibration data"):
        capture_block_inputs(model, torch.zeros(0, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="has no model.layers"):
        decoder_blocks(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="alphas must be"):
        AWQConfig(alphas=())
    with pytest.raises(ValueError, match="no calibration data"):
        awq_quantize_blocks(decoder_blocks(model), BlockInputs(hidden=[]))
