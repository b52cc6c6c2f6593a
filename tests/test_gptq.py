import copy
import dataclasses

import pytest
import torch
from torch import nn

from helper.gptq import (GPTQConfig, HessianAccumulator, gptq_pack, gptq_quantize_blocks, gptq_quantize_weight,
                         rtn_quantize_weight, weight_scheme)
from helper.layers import W4A16Linear
from helper.layerwise import BlockInputs
from helper.linear_quant import quantize_tensor


def _problem(in_features=128, out_features=48, tokens=1024, seed=0):
    """Correlated inputs with uneven channel scales, as real activations have: where GPTQ beats RTN."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(in_features) + 0.5 * torch.randn(in_features, in_features, generator=generator) / 8
    x = torch.randn(tokens, in_features, generator=generator) * torch.linspace(0.2, 3, in_features) @ mixing
    weight = torch.randn(out_features, in_features, generator=generator)
    accumulator = HessianAccumulator(in_features)
    accumulator.add_batch(x)
    return x, weight, accumulator.result()


def _output_error(x, weight, quantized):
    return (x @ (weight - quantized).T).pow(2).mean().item()


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("group_size", [None, 32], ids=["per-row", "g32"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "scale+min"])
def test_gptq_beats_rtn_on_the_layer_output(bits, group_size, symmetric):
    x, weight, hessian = _problem()
    config = GPTQConfig(bits, group_size, symmetric)
    result = gptq_quantize_weight(weight, hessian, config)
    rtn = quantize_tensor(weight, weight_scheme(config, group_size or 128)).dequantize()
    assert _output_error(x, weight, result.weight) < 0.95 * _output_error(x, weight, rtn)


@pytest.mark.parametrize("act_order", [False, True], ids=["natural", "act-order"])
def test_result_lies_on_its_own_grid_and_stores_in_a_packed_layer(act_order):
    x, weight, hessian = _problem()
    result = gptq_quantize_weight(weight, hessian, GPTQConfig(4, 32, act_order=act_order))
    assert torch.equal(result.quantized.dequantize(), result.weight)
    codes = result.quantized.codes()
    assert codes.min() >= -8 and codes.max() <= 7
    layer = W4A16Linear.from_quantized(result.quantized)
    assert torch.equal(layer.dequantized_weight(), result.weight)


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "scale+min"])
def test_clip_search_never_rounds_a_group_worse_and_clips_an_outlier(symmetric):
    from helper.gptq import _group_params, _round_column

    scheme = weight_scheme(GPTQConfig(3, 32, symmetric), 32)
    generator = torch.Generator().manual_seed(1)
    columns = torch.randn(64, 32, generator=generator)
    columns[0, 5] = 12.0  # one outlier: the full range wastes most of row 0's 8 levels
    errors = {}
    for search in (False, True):
        scale, zero_point = _group_params(columns, scheme, clip_search=search)
        _, q = _round_column(columns, scale, zero_point.float(), scheme)
        errors[search] = (q - columns).abs().pow(2.4).sum(dim=1)
        if search:
            assert scale[0] < _group_params(columns, scheme)[0][0]  # row 0's range was shrunk
    assert (errors[True] <= errors[False] + 1e-5).all()
    assert errors[True].sum() < 0.9 * errors[False].sum()


def test_clip_search_gives_a_storable_result_that_beats_plain_gptq_at_3_bits():
    x, weight, hessian = _problem()
    weight[:, ::17] *= 6  # heavy-tailed rows, like real weights
    plain = gptq_quantize_weight(weight, hessian, GPTQConfig(3, 32, False, act_order=True))
    clipped = gptq_quantize_weight(weight, hessian, GPTQConfig(3, 32, False, act_order=True, clip_search=True))
    assert torch.allclose(clipped.quantized.dequantize(), clipped.weight, atol=1e-6)
    assert _output_error(x, weight, clipped.weight) < _output_error(x, weight, plain.weight)


def test_sixteen_bits_is_exact_to_float_precision():
    x, weight, hessian = _problem()
    result = gptq_quantize_weight(weight, hessian, GPTQConfig(16, None))
    assert torch.allclose(result.weight, weight, rtol=0, atol=1e-4 * weight.abs().max().item())


def test_act_order_quantizes_high_energy_inputs_first_and_returns_original_order():
    x, weight, hessian = _problem()
    permutation = torch.randperm(weight.shape[1], generator=torch.Generator().manual_seed(1))
    result = gptq_quantize_weight(weight, hessian, GPTQConfig(4, 32, act_order=True))
    assert torch.equal(result.order, torch.argsort(torch.diag(hessian), descending=True))
    # permuting the inputs (weight columns and Hessian alike) permutes the answer the same way
    permuted = gptq_quantize_weight(weight[:, permutation], hessian[permutation][:, permutation],
                                    GPTQConfig(4, None, act_order=True))
    plain = gptq_quantize_weight(weight, hessian, GPTQConfig(4, None, act_order=True))
    assert torch.allclose(permuted.weight, plain.weight[:, permutation], atol=1e-5)


def test_lazy_batches_give_the_same_answer_as_column_by_column():
    x, weight, hessian = _problem()
    lazy = gptq_quantize_weight(weight, hessian, GPTQConfig(4, 32, block_size=128))
    eager = gptq_quantize_weight(weight, hessian, GPTQConfig(4, 32, block_size=32))
    assert torch.allclose(lazy.weight, eager.weight, atol=1e-5)


def test_a_singular_hessian_is_rescued_by_dampening_and_dead_inputs_become_zero():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, generator=generator)  # 8 samples: rank 8 of 64
    x[:, 5] = 0  # an input that never fires
    accumulator = HessianAccumulator(64)
    accumulator.add_batch(x)
    weight = torch.randn(16, 64, generator=generator)
    result = gptq_quantize_weight(weight, accumulator.result(), GPTQConfig(4, 32))
    assert torch.isfinite(result.weight).all() and (result.weight[:, 5] == 0).all()
    with pytest.raises(ValueError, match="not positive definite even with damp=0"):
        gptq_quantize_weight(weight, -torch.eye(64), GPTQConfig(4, 32, damp=0))


def test_bad_input_gets_clear_errors():
    weight = torch.randn(8, 64)
    with pytest.raises(ValueError, match="no calibration data reached this layer"):
        HessianAccumulator(64).result()
    with pytest.raises(ValueError, match=r"the Hessian must be \(64, 64\)"):
        gptq_quantize_weight(weight, torch.eye(32))
    with pytest.raises(ValueError, match="group_size 48 does not divide in_features 64"):
        gptq_quantize_weight(weight, torch.eye(64), GPTQConfig(4, 48))
    with pytest.raises(ValueError, match="NaN or Inf"):
        gptq_quantize_weight(weight * float("nan"), torch.eye(64))
    with pytest.raises(ValueError, match="bits must be one of"):
        GPTQConfig(bits=5.5)
    with pytest.raises(ValueError, match="damp is a fraction"):
        GPTQConfig(damp=2)
    with pytest.raises(ValueError, match="inputs have 32 features, the layer has 64"):
        HessianAccumulator(64).add_batch(torch.randn(4, 32))
    with pytest.raises(ValueError, match="no calibration data"):
        BlockInputs(hidden=[])


def test_sequential_gptq_on_a_linear_stack_uses_quantized_inputs_and_beats_rtn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64), nn.ReLU(), nn.Linear(64, 32))
    x = torch.randn(512, 64) * torch.linspace(0.2, 3, 64)
    reference = model(x).detach()
    gptq_model, rtn_model = copy.deepcopy(model), copy.deepcopy(model)
    gptq_quantize_blocks(list(gptq_model), BlockInputs(hidden=[x]), GPTQConfig(3, 32))
    for layer in rtn_model:
        if isinstance(layer, nn.Linear):
            layer.weight.data = quantize_tensor(layer.weight.detach(), weight_scheme(GPTQConfig(3, 32), 32)).dequantize()
    gptq_error = (gptq_model(x) - reference).pow(2).mean().item()
    rtn_error = (rtn_model(x) - reference).pow(2).mean().item()
    assert gptq_error < 0.8 * rtn_error


def test_gptq_pack_swaps_in_packed_layers_with_identical_outputs():
    torch.manual_seed(0)
    blocks = nn.ModuleList([nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(2)])
    x = torch.randn(128, 64)
    results = gptq_quantize_blocks(blocks, BlockInputs(hidden=[x]), GPTQConfig(4, 32))
    expected = blocks[1](blocks[0](x))
    holder = nn.Module()
    gptq_pack(holder, results, blocks)
    assert isinstance(blocks[0][0], W4A16Linear)
    assert torch.allclose(blocks[1](blocks[0](x)), expected, atol=1e-6)


@pytest.mark.parametrize("bits, group_size, symmetric, domain, scale_bits", [
    (4, 96, True, "int", 16), (4, 128, False, "int", 16), (2, 32, False, "int", 16), (8, 64, False, "int", 16),
    (4, 32, False, "float", 16), (4, 64, False, "float", 32)],
    ids=["int4-g96-sym", "int4-g128-asym", "int2-g32-asym", "int8-g64-asym", "int4-scale+min-fp16", "int4-fp32-min"])
def test_storage_bits_equal_the_bytes_of_the_packed_checkpoint_tensors(bits, group_size, symmetric, domain,
                                                                        scale_bits):
    from helper.gptq import checkpoint_tensors
    from helper.sizes import tensor_bytes, weight_storage_bits

    x, weight, hessian = _problem(in_features=768, out_features=64)
    config = GPTQConfig(bits, group_size, symmetric, zero_point_domain=domain, scale_bits=scale_bits)
    quantized = gptq_quantize_weight(weight, hessian, config).quantized
    tensors = checkpoint_tensors(quantized)
    if scale_bits == 32:  # the simulation's format: fp32 scales and fp32 minimums, as W4A16Linear stores them
        stored = 8 * linear_weight_bits_of(W4A16Linear.from_quantized(quantized)) / weight.numel()
    else:
        stored = 8 * sum(tensor_bytes(t) for t in tensors.values()) / weight.numel()
    assert stored == weight_storage_bits(bits, group_size, symmetric, domain, scale_bits)
    assert tensors["weight_scale"].dtype == torch.float16
    if scale_bits == 16:  # the packed tensors hold exactly the simulated grid
        assert torch.equal(tensors["weight_scale"].float().reshape(-1, 1), quantized.scale)


def linear_weight_bits_of(layer):
    from helper.evaluate import linear_weight_bits

    holder = nn.Sequential(layer)
    return linear_weight_bits(holder)["bytes"]


def test_checkpoint_format_numbers_of_the_lesson():
    from helper.sizes import weight_storage_bits

    assert weight_storage_bits(4, 128, symmetric=False) == 4 + 20 / 128  # 4.156: GPTQ/AWQ asym files
    assert weight_storage_bits(4, 128) == 4.125
    assert weight_storage_bits(4, 128, False, "float", 32) == 4.5  # the old simulation's accounting
    assert weight_storage_bits(2, 32, symmetric=False) == 2 + 18 / 32
    with pytest.raises(ValueError, match="scale_bits must be 16"):
        weight_storage_bits(4, 128, scale_bits=8)
    with pytest.raises(ValueError, match="zero_point_domain"):
        GPTQConfig(zero_point_domain="half")


@pytest.mark.parametrize("symmetric, domain", [(True, "int"), (False, "int"), (False, "float")])
def test_rtn_is_gptq_without_error_feedback(symmetric, domain):
    """With an identity Hessian no column's error reaches another: GPTQ reduces to RTN on the same grid."""
    _, weight, _ = _problem()
    config = GPTQConfig(4, 32, symmetric, zero_point_domain=domain, scale_bits=16)
    rtn = rtn_quantize_weight(weight, config)
    gptq = gptq_quantize_weight(weight, torch.eye(128), dataclasses.replace(config, damp=0.0)).weight
    assert torch.allclose(rtn, gptq, atol=1e-6)
    fp32 = rtn_quantize_weight(weight, dataclasses.replace(config, scale_bits=32))
    assert torch.equal(fp32, quantize_tensor(weight, weight_scheme(config, 32)).dequantize())  # lesson 03's RTN


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gate, self.up, self.down = nn.Linear(32, 64), nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x):
        return self.down(torch.relu(self.gate(x)) * self.up(x))


def test_true_sequential_stages_and_per_layer_configs():
    from helper.gptq import sequential_stages

    block = _Mlp()
    x = torch.randn(256, 32) * torch.linspace(0.2, 3, 32)
    inputs = BlockInputs(hidden=[x])
    assert sequential_stages(block, inputs, ["gate", "up", "down"]) == [["gate", "up"], ["down"]]
    reference = block(x).detach()
    errors = {}
    for sequential in (False, True):
        quantized = copy.deepcopy(block)
        results = gptq_quantize_blocks([quantized], inputs, GPTQConfig(3, 32, true_sequential=sequential),
                                       layer_configs={"blocks.0.down": GPTQConfig(8, None)})
        assert results["blocks.0.down"].quantized.scheme.bits == 8 and results["blocks.0.up"].quantized.scheme.bits == 3
        errors[sequential] = (quantized(x) - reference).pow(2).mean().item()
    assert errors[True] != errors[False]  # down's Hessian came from quantized gate/up outputs


def test_hessian_accumulator_refuses_nan_and_odd_sizes():
    accumulator = HessianAccumulator(4)
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(1 of 8 values\)"):
        accumulator.add_batch(torch.tensor([[1.0, 2.0, 3.0, float("nan")], [1.0, 2.0, 3.0, 4.0]]))
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        accumulator.add_batch(torch.ones(2, 4, dtype=torch.long))
    assert accumulator.samples == 0  # nothing was added
    with pytest.raises(ValueError, match=r"in_features must be an integer in \[1, 16,384\]"):
        HessianAccumulator(10**6)
    with pytest.raises(ValueError, match="in_features must be an integer"):
        HessianAccumulator(4.5)


@pytest.mark.parametrize("flag", ["symmetric", "act_order", "clip_search", "true_sequential"])
def test_gptq_config_refuses_string_booleans(flag):
    with pytest.raises(ValueError, match=f"{flag} must be True or False, got 'False'"):
        GPTQConfig(**{flag: "False"})
