"""QAT on an LLM: STE and LSQ gradients, RTN/GPTQ starts, distillation, block-wise scales, storage bits."""

import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

import helper
from helper.gptq import GPTQConfig, gptq_quantize_model, rtn_quantize_weight
from helper.qat_llm import (QAT_CONFIG, QATLinear, code_changes, distillation_loss, freeze_qat,
                            learn_scales_blockwise, lsq_fake_quantize, qat_bits_per_weight, qat_layers, to_qat,
                            train_distilled)


def _tiny_llama(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _windows(n=4, length=16, seed=0):
    return torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(seed))


def test_weight_gradient_is_lesson03_ste():
    """Inside the grid the gradient passes unchanged, outside it is zero: the same as lesson 03's fake_quantize."""
    torch.manual_seed(0)
    weight = (torch.randn(4, 1, 8) * 2).requires_grad_()
    scale, zero_point = torch.full((4, 1, 1), 0.25), torch.full((4, 1, 1), 8.0)
    out = lsq_fake_quantize(weight, scale, zero_point, 0, 15)
    out.sum().backward()
    codes = torch.round(weight.detach() / scale) + zero_point
    inside = (codes >= 0) & (codes <= 15)
    assert torch.equal(weight.grad, inside.float())
    assert inside.any() and (~inside).any()
    scheme = helper.QuantScheme(bits=4, symmetric=False, signed=False, granularity="per_group", group_size=8)
    reference = weight.detach().clone().reshape(4, 8).requires_grad_()
    helper.fake_quantize(reference, scheme, clip=(torch.full((4, 1), -2.0), torch.full((4, 1), 1.75))).sum().backward()
    torch.testing.assert_close(out.detach().reshape(4, 8), helper.fake_quantize(
        weight.detach().reshape(4, 8), scheme, clip=(torch.full((4, 1), -2.0), torch.full((4, 1), 1.75))))


def test_scale_gradient_is_lsq():
    """d w_hat / d s = round(w/s) - w/s inside the grid, (clamped code - z) outside (Esser et al. 2020, eq. 3)."""
    weight = torch.tensor([[[0.30, -0.12, 5.0, -5.0]]])
    scale = torch.tensor([[[0.1]]], requires_grad=True)
    zero_point = torch.tensor([[[8.0]]])
    lsq_fake_quantize(weight, scale, zero_point, 0, 15).backward(torch.ones_like(weight))
    ratio = weight / 0.1
    expected = (torch.round(ratio[..., :2]) - ratio[..., :2]).sum() + (15 - 8) + (0 - 8)
    torch.testing.assert_close(scale.grad.reshape(()), expected.reshape(()))


def test_rtn_start_stores_exactly_rtn():
    model = _tiny_llama()
    qat = to_qat(model)
    frozen = freeze_qat(qat)
    for name, layer in qat_layers(qat).items():
        original = model.get_submodule(name).weight
        expected = rtn_quantize_weight(original, QAT_CONFIG)
        assert torch.equal(frozen.get_submodule(name).weight, expected), name
    assert len(qat_layers(qat)) == 14
    ids = _windows(2, 16)
    with helper.stored_weights(qat):
        stored = qat(input_ids=ids).logits
    assert torch.equal(stored, frozen(input_ids=ids).logits)
    assert not any(layer.storage for layer in qat_layers(qat).values())
    assert qat_bits_per_weight(qat) == pytest.approx(4 + 20 / 128)
    assert not any(p.requires_grad for n, p in qat.named_parameters() if "embed" in n or "norm" in n)


def test_gptq_start_stores_gptq_weights():
    model = _tiny_llama()
    config = GPTQConfig(bits=4, group_size=128, symmetric=False, zero_point_domain="int", scale_bits=16,
                        act_order=True)
    results = gptq_quantize_model(copy.deepcopy(model), _windows(8, 32), config)
    frozen = freeze_qat(to_qat(model, results))
    for index, block in enumerate(frozen.model.layers):
        for name in ("self_attn.q_proj", "mlp.down_proj"):
            assert torch.equal(block.get_submodule(name).weight, results[f"blocks.{index}.{name}"].weight)
    with pytest.raises(ValueError, match="integer zero-point"):
        to_qat(model, gptq_results=gptq_quantize_model(copy.deepcopy(model), _windows(2, 16)))


def test_distillation_loss_is_kl():
    p_logits, q_logits = torch.randn(2, 3, 10), torch.randn(2, 3, 10)
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(q_logits, p_logits), expected)
    assert distillation_loss(p_logits, p_logits).abs() < 1e-6
    with pytest.raises(ValueError, match="shapes differ"):
        distillation_loss(p_logits, q_logits[:1])


def test_distillation_lowers_kl_and_only_qat_layers_train():
    teacher = _tiny_llama()
    student = to_qat(teacher)
    windows = _windows(2, 16)
    embeddings = student.model.embed_tokens.weight.clone()
    history = train_distilled(student, teacher, windows, steps=15, lr=1e-4, scale_lr=1e-3, batch_size=2,
                              evaluate=lambda m: 0.0, eval_every=5)
    assert history["loss"][-1] < history["loss"][0]
    assert [step for step, _ in history["eval"]] == [0, 5, 10, 15]
    assert torch.equal(student.model.embed_tokens.weight, embeddings)
    assert all(isinstance(m, QATLinear) for m in qat_layers(student).values())


def test_blockwise_scales_reduce_block_error_and_move_codes():
    teacher = _tiny_llama()
    student = to_qat(teacher, train_weight=False)
    start = copy.deepcopy(student)
    curves = learn_scales_blockwise(student, teacher, _windows(4, 16), steps=25, lr=1e-2, batch_size=2)
    assert len(curves) == 2 and all(len(c) == 25 for c in curves)
    assert all(min(c[-4:]) < c[0] for c in curves)
    for name, layer in qat_layers(student).items():
        assert torch.equal(layer.weight, qat_layers(start)[name].weight)  # latent weights untouched
    changes = code_changes(start, student)
    assert changes["codes_changed"] > 0
    assert torch.equal(changes["steps_moved"], torch.zeros_like(changes["steps_moved"]))


def test_errors():
    model = _tiny_llama()
    frozen = to_qat(model, train_weight=False, train_scale=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_distilled(frozen, model, _windows(), steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_distilled(to_qat(model), model, _windows(), steps=0)
    with pytest.raises(ValueError, match="scale must be"):
        QATLinear(torch.zeros(4, 8), torch.ones(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="> 0"):
        QATLinear(torch.zeros(4, 8), torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no QATLinear"):
        freeze_qat(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="asymmetric"):
        to_qat(model, config=GPTQConfig())


def test_custom_backward_matches_autograd_through_round_ste():
    """lsq_fake_quantize's saved-tensor-light backward equals autograd through the formula with round_ste."""
    torch.manual_seed(1)
    weight = (torch.randn(6, 3, 16) * 1.5).requires_grad_()
    scale = (torch.rand(6, 3, 1) * 0.3 + 0.05).requires_grad_()
    zero_point = torch.randint(0, 16, (6, 3, 1)).float()
    upstream = torch.randn(6, 3, 16)
    ours = lsq_fake_quantize(weight, scale, zero_point, 0, 15)
    ours.backward(upstream)
    w2, s2 = weight.detach().clone().requires_grad_(), scale.detach().clone().requires_grad_()
    codes = torch.clamp(helper.round_ste(w2 / s2) + zero_point, 0, 15)
    reference = (codes - zero_point) * s2
    reference.backward(upstream)
    assert torch.equal(ours.detach(), reference.detach())
    torch.testing.assert_close(weight.grad, w2.grad)
    torch.testing.assert_close(scale.grad, s2.grad)


def test_qat_linear_backward_matches_autograd_through_the_fake_quantized_weight():
    """QATLinear's fused backward (w_hat recomputed, not kept) gives autograd's gradients for x, w and log(s)."""
    torch.manual_seed(2)
    linear = nn.Linear(256, 8, bias=True)
    scale, zero_point = torch.rand(8, 2) * 0.02 + 0.01, torch.randint(0, 16, (8, 2)).float()
    ours, reference = (QATLinear(linear.weight, scale, zero_point, linear.bias) for _ in range(2))
    x = torch.randn(3, 5, 256)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(3, 5, 8)
    ours(x1).backward(upstream)
    y = F.linear(x2, reference.quantized_weight(), reference.bias)
    y.backward(upstream)
    torch.testing.assert_close(ours(x).detach(), y.detach())
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    torch.testing.assert_close(ours.log_scale.grad, reference.log_scale.grad)
