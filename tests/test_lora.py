"""LoRA over a frozen 4-bit base: against peft, B = 0 is the base, only adapters learn, merge, memory, errors."""

import math

import pytest
import torch
from torch import nn

import helper
from helper.codebooks import fake_quantize_codebook, nf4_codebook
from helper.lora import LoRALinear, NF4Weight, add_lora, lora_memory_bytes, make_lora_optimizer, merge_lora
from helper.lora import measured_training_bytes, merge_lora_model, train_lora


def _linear(in_features=128, out_features=64, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = _linear(128, 64, seed=1)
        self.down = _linear(64, 128, bias=False, seed=2)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def test_nf4_weight_is_lesson05_double_quantized_nf4():
    weight = _linear(256, 64).weight.detach()
    expected = fake_quantize_codebook(weight, nf4_codebook(), 64, double_quant=True)
    assert torch.equal(NF4Weight(weight).dequantize(), expected)
    assert torch.equal(NF4Weight(weight, double_quant=False).dequantize(),
                       fake_quantize_codebook(weight, nf4_codebook(), 64))


@pytest.mark.parametrize("base", ["nf4", "int4", "fp32"])
def test_matches_peft_outputs_and_gradients(base):
    """Same base weight, same A and B, same input: peft's LoRA gives the same output and gradients."""
    peft = pytest.importorskip("peft")
    ours = LoRALinear(_linear(), rank=4, alpha=8.0, base=base, group_size=64)
    reference_model = nn.Sequential(_linear())
    with torch.no_grad():
        reference_model[0].weight.copy_(ours.base_weight_dequantized())  # peft's base: the dequantized weight
    reference = peft.get_peft_model(reference_model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"],
                                                                      lora_dropout=0.0))
    layer = reference.base_model.model[0]
    torch.manual_seed(1)
    with torch.no_grad():
        ours.lora_B.copy_(torch.randn_like(ours.lora_B))  # B != 0 so every gradient is non-trivial
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
    x = torch.randn(3, 5, 128, requires_grad=True)
    x_peft = x.detach().clone().requires_grad_()
    out_ours, out_peft = ours(x), reference(x_peft)
    torch.testing.assert_close(out_ours, out_peft, rtol=1e-6, atol=1e-6)
    (out_ours ** 2).sum().backward()
    (out_peft ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x_peft.grad, rtol=1e-5, atol=1e-5)  # what flows to earlier layers
    torch.testing.assert_close(ours.lora_A.grad, layer.lora_A["default"].weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.lora_B.grad, layer.lora_B["default"].weight.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base", ["nf4", "int4"])
def test_a_quantized_base_keeps_no_dequantized_weight_for_the_backward(base):
    """Autograd saves only activations-sized tensors: the base is dequantized again in the backward."""
    layer = LoRALinear(_linear(256, 192, bias=False), rank=4, base=base, group_size=64)
    x = torch.randn(2, 256, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = layer(x)
    assert saved and max(saved) < 192 * 256  # x, A, B, low-rank activations; never the 192 x 256 weight
    out.sum().backward()
    torch.testing.assert_close(x.grad, layer.base_weight_dequantized().sum(0) + layer.scaling * (
        layer.lora_B @ layer.lora_A).sum(0).expand(2, -1), rtol=1e-5, atol=1e-5)


def test_initialisation_is_peft_s():
    """A kaiming-uniform(a=sqrt(5)): |A| <= 1/sqrt(in), spread over that range; B = 0."""
    layer = LoRALinear(_linear(512, 64), rank=16)
    bound = 1 / math.sqrt(512)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.95 * bound
    assert torch.equal(layer.lora_B, torch.zeros_like(layer.lora_B))
    assert layer.scaling == 16.0 / 16


@pytest.mark.parametrize("base", ["nf4", "int4", "fp32"])
def test_b_zero_is_the_quantized_base(base):
    linear = _linear()
    layer = LoRALinear(linear, rank=8, base=base, group_size=64)
    x = torch.randn(4, 128)
    expected = nn.functional.linear(x, layer.base_weight_dequantized(), linear.bias)
    assert torch.equal(layer(x), expected)
    if base == "fp32":
        torch.testing.assert_close(layer(x), linear(x))


def test_only_adapters_get_gradients_and_base_never_moves():
    model = add_lora(_Two(), rank=4, base="nf4")
    before = {name: b.clone() for name, b in model.named_buffers()}
    optimizer = make_lora_optimizer(model, lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 128)).pow(2).mean().backward()
        optimizer.step()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"up.lora_A", "up.lora_B", "down.lora_A", "down.lora_B"}
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    assert all(torch.equal(before[name], b) for name, b in model.named_buffers())
    assert model.up.lora_B.abs().max() > 0  # the adapters did learn


def test_merge_equals_base_plus_ba_before_requantization():
    layer = LoRALinear(_linear(), rank=4, base="nf4")
    with torch.no_grad():
        layer.lora_B.normal_()
    merged = merge_lora(layer)
    expected = layer.base_weight_dequantized() + layer.scaling * layer.lora_B @ layer.lora_A
    assert torch.equal(merged.weight, expected)
    x = torch.randn(6, 128)
    torch.testing.assert_close(merged(x), layer(x), rtol=1e-5, atol=1e-5)
    requantized = merge_lora(layer, requantize=True)
    assert torch.equal(requantized.weight, NF4Weight(expected).dequantize())  # back on the NF4 grid
    assert not torch.equal(requantized.weight, merged.weight)


def test_memory_formula_matches_tensor_bytes():
    model = add_lora(_Two(), rank=4, base="nf4")
    model(torch.randn(2, 128)).sum().backward()
    measured = measured_training_bytes(model)
    adapters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base_params = 128 * 64 + 64 * 128
    frozen_biases = 64 * 4
    formula = lora_memory_bytes(base_params, adapters, helper.codebook_bits_per_parameter(4, 64, True))
    assert measured["adapters"] == formula["adapters"] and measured["adapter gradients"] == formula["adapter gradients"]
    # NF4 codes + absmax codes + the second-level fp32 scale and offset of each layer, + fp32 biases
    blocks = base_params // 64
    exact = base_params // 2 + blocks + 2 * (4 + 4) + frozen_biases
    assert measured["frozen"] == exact
    assert abs(formula["base weights"] - (exact - frozen_biases)) < 2 * (4 + 4)  # formula: 32 bits per 16384
    optimizer = make_lora_optimizer(model)
    optimizer.step()
    moments = sum(s.numel() * s.element_size() for state in optimizer.state.values()
                  for key, s in state.items() if key != "step")
    assert moments == formula["Adam states"]


def test_bad_inputs_raise_clear_errors():
    for bad, error in ((torch.full((2, 64), float("nan")), ValueError), (torch.ones(128), ValueError),
                       (torch.ones(2, 64, dtype=torch.int8), TypeError), ("weights", TypeError)):
        with pytest.raises(error, match="weight"):
            NF4Weight(bad)
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(_linear(), rank=0)
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(_linear(), rank=65)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(_linear(), alpha=0)
    with pytest.raises(ValueError, match="base"):
        LoRALinear(_linear(), base="nf3")
    with pytest.raises(TypeError, match="linear"):
        LoRALinear(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="128 features"):
        LoRALinear(_linear())(torch.zeros(2, 5))
    model = add_lora(_Two(), rank=2)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_lora_optimizer(model)
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_lora(nn.ReLU())
    with pytest.raises(TypeError, match="LoRALinear"):
        merge_lora(_linear())


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


def test_train_lora_lowers_the_loss_and_merged_model_computes_the_same():
    model = add_lora(_tiny_llama(), rank=4, base="nf4")
    windows = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    history = train_lora(model, windows, steps=12, lr=1e-2, batch_size=2, evaluate=lambda m: 1.0, eval_every=6)
    assert history["loss"][-1] < history["loss"][0]
    assert [s for s, _ in history["eval"]] == [0, 6, 12]
    merged = merge_lora_model(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=windows).logits, model(input_ids=windows).logits,
                                   rtol=1e-4, atol=1e-4)
    requantized = merge_lora_model(model, requantize=True)
    assert not any(isinstance(m, LoRALinear) for m in requantized.modules())
    with pytest.raises(ValueError, match="no LoRALinear"):
        merge_lora_model(_tiny_llama())
    with pytest.raises(ValueError, match="steps"):
        train_lora(model, windows, steps=0)
