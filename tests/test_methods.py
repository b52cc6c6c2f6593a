import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helper.layers import W4A16Linear, W8A16Linear
from helper.methods import Method, apply_method, evaluate_methods, grid_bits_per_weight, method_table_text


def _tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _windows(n, seed):
    return torch.randint(0, 128, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_grid_bits_per_weight_counts_codes_and_scales():
    model = _tiny_llama()
    assert grid_bits_per_weight(model, 4, 32) == 4 + 32 / 32
    assert grid_bits_per_weight(model, 3, 32, symmetric=False) == 3 + 64 / 32
    # per-row int8: 8 + 32 / in_features, weighted by each layer's share
    assert 8 < grid_bits_per_weight(model, 8, None) < 8.5


@pytest.mark.parametrize("method, layer_class", [
    (Method("rtn8", "rtn", 8, None), W8A16Linear),
    (Method("rtn4", "rtn", 4, 32), W4A16Linear),
    (Method("gptq4", "gptq", 4, 32, symmetric=False, act_order=True), W4A16Linear),
], ids=["rtn8", "rtn4", "gptq4"])
def test_packed_methods_store_real_layers_and_measure_their_bits(method, layer_class):
    model = _tiny_llama()
    quantized, bits = apply_method(model, method, _windows(2, 0))
    assert isinstance(quantized.model.layers[0].mlp.down_proj, layer_class)
    assert isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)  # the original is untouched
    assert bits < 9


def test_simulated_methods_and_the_table():
    model = _tiny_llama()
    methods = (Method("fp32", "fp32", 32), Method("awq3", "awq", 3, 32), Method("rtn3", "rtn", 3, 32),
               Method("mixed", "mixed", 4, 32, budget_bits=6.0))
    rows = evaluate_methods(model, _windows(2, 1), _windows(2, 2), methods, fast=True)
    assert [r["method"] for r in rows] == ["fp32", "awq3", "rtn3", "mixed"]
    assert rows[1]["bits_per_weight"] == rows[2]["bits_per_weight"] == 3 + 32 / 32
    text = method_table_text(rows, base=rows[0]["perplexity"], with_seconds=True)
    assert "vs fp32" in text and "+0 %" in text
    with pytest.raises(ValueError, match="kind must be one of"):
        Method("x", "magic")
    with pytest.raises(ValueError, match="applied with helper.smoothquant"):
        apply_method(model, Method("w8a8", "w8a8"), _windows(1, 0))
