import copy

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from helper.awq import (AWQConfig, LLAMA_SCALE_GROUPS, _first_tokens, activation_scale, apply_clip, apply_scale,
                        awq_quantize_blocks, awq_quantize_model, awq_scales, clip_search, rtn_weight,
                        search_block_scale, search_scale)
from helper.layerwise import BlockInputs, capture_block_inputs, decoder_blocks, linear_layers, run_block


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


@pytest.mark.parametrize("search", ["block", "layer"])
def test_alpha_zero_is_round_to_nearest_exactly(search):
    model = _tiny_llama()
    rtn = copy.deepcopy(model)
    config = AWQConfig(bits=4, group_size=32, alphas=(0.0,), search=search, clip=False)
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
    assert {f"blocks.{i}.{g.layers[0]}" for i in range(2) for g in LLAMA_SCALE_GROUPS} <= set(results)
    assert all("alpha" in results[f"blocks.{i}.{g.layers[0]}"] for i in range(2) for g in LLAMA_SCALE_GROUPS)
    awq_quantize_model(rtn_model, _windows(8), AWQConfig(bits=3, group_size=32, alphas=(0.0,), clip=False),
                       batch_size=4)
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


@torch.no_grad()
def test_max_tokens_cuts_the_search_inside_a_calibration_batch():
    model = _tiny_llama()
    inputs = capture_block_inputs(model, _windows(6), batch_size=4)  # batches of 4 and 2 windows of 32 tokens
    cut = _first_tokens(inputs, 40)  # 40 tokens -> the first 2 windows of the first batch, not all 4
    assert [h.shape[0] for h in cut.hidden] == [2] and torch.equal(cut.hidden[0], inputs.hidden[0][:2])
    assert [h.shape[0] for h in _first_tokens(inputs, 4 * 32 + 1).hidden] == [4, 1]
    assert [h.shape[0] for h in _first_tokens(inputs, 10 ** 6).hidden] == [4, 2]
    block = decoder_blocks(model)[0]
    assert torch.allclose(run_block(block, cut).hidden[0], run_block(block, inputs).hidden[0][:2], atol=1e-5)
    mask = torch.zeros(4, 1, 32, 32)  # a per-window keyword argument is cut with the windows
    cut = _first_tokens(BlockInputs([inputs.hidden[0]], [{"attention_mask": mask, "flag": True}]), 32)
    assert cut.kwargs[0]["attention_mask"].shape[0] == 1 and cut.kwargs[0]["flag"] is True
    config = AWQConfig(bits=3, group_size=32, alphas=(0.0, 0.25, 0.5, 0.75), clip=False, max_tokens=64)
    searched = awq_quantize_model(copy.deepcopy(model), _windows(6), config, batch_size=4)
    alone = awq_quantize_model(copy.deepcopy(model), _windows(6)[:2], config, batch_size=2)  # the 2 windows only
    for name, result in searched.items():
        assert result["alpha"] == alone[name]["alpha"], name
        assert result["losses"] == pytest.approx(alone[name]["losses"], rel=1e-4), name


class _ToyMLP(nn.Module):
    """A Llama MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden=64, inner=96, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.gate_proj, self.up_proj = nn.Linear(hidden, inner, bias=False), nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def _salient_inputs(tokens=256, features=64, seed=3):
    x = torch.randn(2, tokens // 2, features, generator=torch.Generator().manual_seed(seed))
    x[..., :3] *= 25
    return x


@torch.no_grad()
def test_block_search_loss_is_the_mlp_output_error_computed_directly():
    mlp, x = _ToyMLP(), _salient_inputs()
    config = AWQConfig(bits=3, group_size=32, alphas=(0.0, 0.5))
    calls = [((batch.unsqueeze(0),), {}) for batch in x]
    scales, alpha, losses = search_block_scale(mlp, [mlp.gate_proj, mlp.up_proj], calls, x.reshape(-1, 64), config)
    s = x.reshape(-1, 64).abs().mean(0).pow(0.5)
    s = s / (s.max() * s.min()).sqrt()
    gate = rtn_weight(mlp.gate_proj.weight * s, config) / s
    up = rtn_weight(mlp.up_proj.weight * s, config) / s
    direct = mlp.down_proj(torch.nn.functional.silu(x @ gate.T) * (x @ up.T))
    assert losses[0.5] == pytest.approx((direct - mlp(x)).double().pow(2).mean().item(), rel=1e-5)
    assert torch.equal(mlp.gate_proj.weight, _ToyMLP().gate_proj.weight)  # weights restored
    assert alpha == 0.5 and losses[0.5] < losses[0.0]  # salient channels: scaling helps


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@torch.no_grad()
def test_clip_search_is_never_worse_than_no_clip_on_a_toy_block(symmetric):
    mlp, x = _ToyMLP(seed=1), _salient_inputs(seed=4)
    with torch.no_grad():
        mlp.up_proj.weight[:, 7] *= 8  # heavy-tailed groups, as real weights have
    config = AWQConfig(bits=3, group_size=32, symmetric=symmetric)
    inputs = x.reshape(-1, 64)
    max_val, error = clip_search(mlp.up_proj.weight, inputs, config)
    _, no_clip_error = clip_search(mlp.up_proj.weight, inputs, config, max_shrink=0.05)  # factor 1 only
    assert (error <= no_clip_error).all() and error.sum() < no_clip_error.sum()
    reference = mlp(x)
    plain = copy.deepcopy(mlp)
    plain.up_proj.weight.copy_(rtn_weight(plain.up_proj.weight, config))
    apply_clip(mlp.up_proj, max_val)
    mlp.up_proj.weight.copy_(rtn_weight(mlp.up_proj.weight, config))
    assert (mlp(x) - reference).pow(2).mean() <= (plain(x) - reference).pow(2).mean()


@pytest.mark.parametrize("call, message", [
    (lambda: activation_scale(torch.tensor([[1.0, float("nan")]])), "x contains NaN or Inf"),
    (lambda: activation_scale(torch.ones(2, 3, dtype=torch.long)), "x must be a floating-point tensor"),
    (lambda: activation_scale([[1.0]]), "x must be a torch.Tensor"),
    (lambda: awq_scales(torch.tensor([1.0, float("inf")]), 0.5), "x_scale contains NaN or Inf"),
    (lambda: awq_scales(torch.tensor([1.0, -1.0]), 0.5), "x_scale holds mean"),
    (lambda: awq_scales(torch.ones(3), float("nan")), "alpha must be a finite number"),
    (lambda: awq_scales(torch.ones(3), 2.0), r"alpha must be in \[0, 1\]"),
], ids=["nan-x", "int-x", "list-x", "inf-scale", "negative-scale", "nan-alpha", "alpha-range"])
def test_nan_activations_and_odd_alphas_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_activation_scale_needs_a_feature_dimension():
    with pytest.raises(ValueError, match="x must be activations"):
        activation_scale(torch.tensor(0.5))


@pytest.mark.parametrize("flag", ["symmetric", "clip", "quantize"])
def test_awq_config_refuses_string_booleans(flag):
    with pytest.raises(ValueError, match=f"{flag} must be True or False"):
        AWQConfig(**{flag: "False"})
