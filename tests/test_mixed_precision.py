import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helper.layers import W4A16Linear, W8A16Linear
from helper.evaluate import linear_weight_bits
from helper.mixed_precision import (allocate_bits, apply_allocation, bits_per_weight_of, layer_units,
                                    rtn_int4_weight, unit_sensitivity)


def _tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_units_group_layers_by_type_or_block():
    model = _tiny_llama()
    by_type = layer_units(model, "type")
    assert by_type["mlp.down_proj"] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert len(by_type) == 7 and "lm_head" not in str(by_type)
    by_block = layer_units(model, "block")
    assert list(by_block) == ["layers.0", "layers.1"] and len(by_block["layers.0"]) == 7
    with pytest.raises(ValueError, match="by must be one of"):
        layer_units(model, "head")


def test_sensitivity_restores_the_model_and_grows_with_what_is_quantized():
    model = _tiny_llama()
    before = copy.deepcopy(model.state_dict())
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    units = layer_units(model, "type")
    units["everything"] = [n for names in layer_units(model, "block").values() for n in names]
    sensitivity = unit_sensitivity(model, windows, units, group_size=32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(value >= 0 for value in sensitivity.values())
    assert sensitivity["everything"] > max(v for k, v in sensitivity.items() if k != "everything")


def test_allocation_respects_the_budget_and_the_layers_store_what_was_allocated():
    model = _tiny_llama()
    units = layer_units(model, "type")
    sensitivity = {unit: float(i) for i, unit in enumerate(units)}  # down_proj most sensitive
    all_int4 = allocate_bits(model, units, sensitivity, budget_bits=5.0, group_size=32)
    assert set(all_int4.values()) == {4}
    allocation = allocate_bits(model, units, sensitivity, budget_bits=6.0, group_size=32)
    assert allocation["mlp.down_proj"] == 8
    quantized = apply_allocation(copy.deepcopy(model), units, allocation, group_size=32)
    assert isinstance(quantized.model.layers[0].mlp.down_proj, W8A16Linear)
    assert isinstance(quantized.model.layers[0].self_attn.q_proj, W4A16Linear)
    assert linear_weight_bits(quantized)["bits_per_weight"] <= 6.0
    assert bits_per_weight_of(model.model.layers[0].mlp.down_proj, 4, 32) == 4 + 32 / 32
    with pytest.raises(ValueError, match="below all-int4"):
        allocate_bits(model, units, sensitivity, budget_bits=4.9, group_size=32)
    with pytest.raises(ValueError, match="between 4 and 8 bits"):
        bits_per_weight_of(model.model.layers[0].mlp.down_proj, 3)


def test_rtn_int4_weight_equals_the_packed_layer():
    linear = _tiny_llama().model.layers[0].mlp.down_proj
    layer = W4A16Linear.from_linear(linear, 128, adapt_group_size=True)
    assert torch.equal(rtn_int4_weight(linear.weight), layer.dequantized_weight())


def test_per_layer_units_and_the_fisher_sensitivity():
    from helper.mixed_precision import fisher_sensitivity

    model = _tiny_llama()
    units = layer_units(model, "layer")
    assert len(units) == 14 and units["model.layers.1.mlp.down_proj"] == ["model.layers.1.mlp.down_proj"]
    names = list(units)
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    before = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    coarse = fisher_sensitivity(model, windows, names, lambda name, w: rtn_int4_weight(w, 32))
    exact = fisher_sensitivity(model, windows, names, lambda name, w: w)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert flags == [p.requires_grad for p in model.parameters()]
    assert all(value == 0 for value in exact.values()) and all(value > 0 for value in coarse.values())
    finer = fisher_sensitivity(model, windows, names[:1], lambda name, w: w + 0.5 * (rtn_int4_weight(w, 32) - w))
    assert finer[names[0]] == pytest.approx(coarse[names[0]] / 4, rel=1e-4)  # quadratic in the error


@pytest.mark.parametrize("extra", [0.05, 0.2, 0.5, 1.0, 1.8])
@pytest.mark.parametrize("scale_bits, symmetric", [(16, False), (32, True)], ids=["fp16-asym", "fp32-sym"])
def test_per_layer_allocation_respects_the_budget_exactly(extra, scale_bits, symmetric):
    from helper.methods import grid_bits_per_weight

    model = _tiny_llama()
    units = layer_units(model, "layer")
    budget = grid_bits_per_weight(model, 4, 32, symmetric, "int", scale_bits) + extra
    generator = torch.Generator().manual_seed(int(extra * 100))
    sensitivity = {unit: torch.rand(1, generator=generator).item() for unit in units}
    allocation = allocate_bits(model, units, sensitivity, budget, 32, symmetric, "int", scale_bits)
    int8 = tuple(unit for unit, bits in allocation.items() if bits == 8)
    spent = grid_bits_per_weight(model, 4, 32, symmetric, "int", scale_bits, int8_layers=int8)
    assert spent <= budget + 1e-12
    for unit in set(units) - set(int8):  # nothing left at 4 bits would still fit: the budget is used up
        assert grid_bits_per_weight(model, 4, 32, symmetric, "int", scale_bits, int8_layers=int8 + (unit,)) > budget


@pytest.mark.parametrize("change, message", [
    (lambda units, s, a: apply_allocation(_tiny_llama(), units, {**a, "mlp.down_proj": 6}),
     r"allocation\['mlp.down_proj'\] must be one of 4, 8; got 6"),
    (lambda units, s, a: apply_allocation(_tiny_llama(), units, {**a, "mlp.down_proj": "8"}), "must be one of 4, 8"),
    (lambda units, s, a: apply_allocation(_tiny_llama(), units, {}), "allocation has no bits for unit"),
    (lambda units, s, a: apply_allocation(_tiny_llama(), units, [4]), "allocation must be a dict"),
    (lambda units, s, a: allocate_bits(_tiny_llama(), units, s, float("nan")), "budget_bits must be a finite"),
    (lambda units, s, a: allocate_bits(_tiny_llama(), units, s, 0), "budget_bits must be > 0"),
    (lambda units, s, a: allocate_bits(_tiny_llama(), units, {**s, "mlp.up_proj": float("nan")}, 6.0),
     r"sensitivity\['mlp.up_proj'\] must be a finite number"),
    (lambda units, s, a: allocate_bits(_tiny_llama(), units, {}, 6.0), "sensitivity has no value for"),
    (lambda units, s, a: allocate_bits(_tiny_llama(), {}, s, 6.0), "units must be a non-empty dict"),
], ids=["bits-6", "bits-string", "allocation-missing", "allocation-list", "budget-nan", "budget-zero",
        "sensitivity-nan", "sensitivity-missing", "units-empty"])
def test_allocation_refuses_bits_it_cannot_store(change, message):
    units = layer_units(_tiny_llama(), "type")
    sensitivity = {unit: float(i) for i, unit in enumerate(units)}
    with pytest.raises(ValueError, match=message):
        change(units, sensitivity, {unit: 4 for unit in units})


def test_rtn_int4_weight_refuses_a_string_boolean():
    with pytest.raises(ValueError, match="symmetric must be True or False"):
        rtn_int4_weight(torch.randn(8, 64), 32, symmetric="False")
