"""KIVI KV-cache quantization: round-trip bounds, the quantized window, memory arithmetic, the simulation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

import helper
from helper.kv_cache import (fake_quantize_groups, kivi_attention, kivi_quantized_length, quantize_keys_per_channel,
                             quantize_values_per_token, quantized_kv_cache_bytes)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([2, 3, 4, 8]), st.floats(-8, 8))
def test_round_trip_error_is_at_most_half_a_step(seed, bits, log_scale):
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 2, 64, 32, generator=generator) * 2.0 ** log_scale
    keys[..., 3] *= 20  # an outlier channel, as real keys have
    out = quantize_keys_per_channel(keys, bits, 32)
    grouped = keys.reshape(1, 2, 2, 32, 32)
    step = (grouped.amax(dim=-2) - grouped.amin(dim=-2)) / (2**bits - 1)  # per group of tokens, per channel
    error = (out - keys).abs().reshape(1, 2, 2, 32, 32).amax(dim=-2)
    # half a step, plus float32 rounding of (x - min) / scale * scale + min: a few ulps of the group's magnitude
    ulps = 4 * torch.finfo(torch.float32).eps * grouped.abs().amax(dim=-2)
    assert (error <= step / 2 * (1 + 1e-5) + ulps + 1e-30).all()
    values = quantize_values_per_token(keys, bits, 16)
    v_step = (keys.reshape(1, 2, 64, 2, 16).amax(-1) - keys.reshape(1, 2, 64, 2, 16).amin(-1)) / (2**bits - 1)
    v_error = (values - keys).abs().reshape(1, 2, 64, 2, 16).amax(-1)
    v_ulps = 4 * torch.finfo(torch.float32).eps * keys.reshape(1, 2, 64, 2, 16).abs().amax(-1)
    assert (v_error <= v_step / 2 * (1 + 1e-5) + v_ulps + 1e-30).all()


def test_minimum_and_maximum_of_each_group_are_exact():
    x = torch.randn(4, 32)
    out = fake_quantize_groups(x, 2, dim=-1)
    assert torch.allclose(out.amin(-1), x.amin(-1)) and torch.allclose(out.amax(-1), x.amax(-1), atol=1e-6)
    assert all(len(row.unique()) <= 4 for row in out)


def test_incomplete_group_of_tokens_is_left_in_full_precision():
    keys = torch.randn(1, 1, 40, 8)
    out = quantize_keys_per_channel(keys, 2, 32)
    assert torch.equal(out[:, :, 32:], keys[:, :, 32:]) and not torch.equal(out[:, :, :32], keys[:, :, :32])


def test_per_channel_beats_per_token_on_keys_with_outlier_channels():
    torch.manual_seed(0)
    keys = torch.randn(1, 1, 128, 64)
    keys[..., :4] *= 30
    per_channel = (quantize_keys_per_channel(keys, 2, 32) - keys).pow(2).mean()
    per_token = (quantize_values_per_token(keys, 2, 64) - keys).pow(2).mean()
    assert per_channel < per_token / 4


def test_quantized_length_keeps_the_residual_window():
    tokens = torch.arange(1, 400)
    n = kivi_quantized_length(tokens, 32, 128)
    full = tokens - n
    assert (n % 32 == 0).all() and (full >= torch.clamp(tokens, max=128)).all() and (full < 128 + 32).all()
    assert kivi_quantized_length(160, 32, 128).item() == 32 and kivi_quantized_length(159, 32, 128).item() == 0


def test_cache_bytes():
    # SmolLM2-135M: 30 layers x 3 KV heads x 64 dims x (K and V) x 2 bytes = 23,040 bytes per token
    assert quantized_kv_cache_bytes(30, 3, 64, 1) == 23_040 == helper.kv_cache_bytes(30, 3, 64, 1, 2)
    # Llama-2-7B at 4k tokens: 2 GiB in fp16
    assert quantized_kv_cache_bytes(32, 32, 128, 4096) == 2 * 2**30
    # int4 with an fp16 scale and minimum per 32 values: 5 bits per number, newest 128 tokens at fp16
    per_token = 2 * 30 * 3 * 64
    assert quantized_kv_cache_bytes(30, 3, 64, 1128, 4) == per_token * (1000 * 5 / 8 + 128 * 2)
    assert quantized_kv_cache_bytes(30, 3, 64, 100, 2) == per_token * 100 * 2  # all in the window


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def test_simulation_is_the_model_when_nothing_is_old_enough():
    model = tiny_llama()
    ids = torch.randint(0, 128, (2, 96))
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        with kivi_attention(model, 2, 16, residual=96):
            same = model(input_ids=ids).logits
        with kivi_attention(model, 2, 16, residual=32):
            changed = model(input_ids=ids).logits
    assert model.config._attn_implementation not in ("", None) and "kivi" not in model.config._attn_implementation
    assert torch.allclose(same, reference, atol=1e-5)
    # positions up to residual + group - 1 see no quantized token: identical; later ones differ
    assert torch.allclose(changed[:, :47], reference[:, :47], atol=1e-5)
    assert not torch.allclose(changed[:, 48:], reference[:, 48:], atol=1e-3)


def test_attention_matches_a_query_by_query_kivi_cache():
    """Each query i by hand: the cache it reads holds quantized K/V for the first n(i + 1) tokens."""
    from helper.kv_cache import _kivi_attention_function

    torch.manual_seed(1)
    query, key, value = torch.randn(1, 4, 70, 16), torch.randn(1, 2, 70, 16), torch.randn(1, 2, 70, 16)
    out, _ = _kivi_attention_function(4, 16, 24)(None, query, key, value, None, scaling=0.25)
    k_q, v_q = quantize_keys_per_channel(key, 4, 16), quantize_values_per_token(value, 4, 16)
    for i in range(70):
        n = int(kivi_quantized_length(i + 1, 16, 24))
        keys = torch.cat([k_q[:, :, :n], key[:, :, n:i + 1]], dim=2).repeat_interleave(2, 1)
        values = torch.cat([v_q[:, :, :n], value[:, :, n:i + 1]], dim=2).repeat_interleave(2, 1)
        weights = torch.softmax(query[:, :, i:i + 1] @ keys.transpose(-1, -2) * 0.25, dim=-1)
        assert torch.allclose(out[:, i], (weights @ values)[:, :, 0], atol=1e-5)


def test_cache_perplexity_of_a_plain_cache_is_the_single_pass_one():
    from transformers import DynamicCache

    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 100))
    single = helper.tail_perplexity(model, ids, 40)
    assert math.isclose(helper.cache_perplexity(model, ids, DynamicCache(config=model.config), 40, 16), single,
                        rel_tol=1e-5)


def test_against_transformers_quantized_cache():
    """Our KIVI int4 and transformers' QuantizedCache (quanto int4, per-channel keys and values) both stay
    close to the full-precision model on the same prompt: mean |logit error| within 3x of each other."""
    from transformers import QuantizedCache

    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 160))
    with torch.no_grad():
        reference = model(input_ids=ids).logits[0, 128:]
        with kivi_attention(model, 4, 16, residual=32):
            ours = model(input_ids=ids).logits[0, 128:]
        cache = QuantizedCache(backend="quanto", config=model.config, nbits=4, q_group_size=16, residual_length=32)
        model(input_ids=ids[:, :128], past_key_values=cache, use_cache=True)
        theirs = model(input_ids=ids[:, 128:], past_key_values=cache, use_cache=True).logits[0]
    ours_error, theirs_error = (ours - reference).abs().mean(), (theirs - reference).abs().mean()
    assert 0 < ours_error and 0 < theirs_error
    assert ours_error / theirs_error < 3 and theirs_error / ours_error < 3


@pytest.mark.parametrize("call,message", [
    (lambda: quantize_keys_per_channel(torch.randn(2, 8), 4), "batch, kv_heads"),
    (lambda: quantize_keys_per_channel(torch.randn(1, 1, 8, 8), 5), "bits must be one of"),
    (lambda: quantize_values_per_token(torch.randn(1, 1, 8, 24), 4, 16), "does not divide head_dim 24"),
    (lambda: quantize_values_per_token(torch.randn(1, 1, 8, 8).long(), 4, 8), "floating"),
    (lambda: quantized_kv_cache_bytes(30, 3, 64, 0), "tokens"),
    (lambda: helper.tail_perplexity(tiny_llama(), torch.zeros(2, 8, dtype=torch.long), 2), "one sequence"),
    (lambda: helper.tail_perplexity(tiny_llama(), torch.zeros(1, 8, dtype=torch.long), 7), "start"),
    (lambda: kivi_attention(torch.nn.Linear(2, 2)).__enter__(), "transformers model"),
    (lambda: kivi_attention(tiny_llama(), 4, 12).__enter__(), "does not divide head_dim 16"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_table_mentions_every_model_and_bits():
    text = helper.kv_cache_table({"SmolLM2-135M": (30, 3, 64, 134_515_008)}, contexts=(4096,), bits=(16, 4))
    assert "SmolLM2-135M" in text and "int4 (KIVI)" in text and f"{4096 * 23040 / 2**30:,.2f}" in text
    assert math.isclose(float(text.splitlines()[-1].split()[-1]), round(134_515_008 * 2 / 2**30, 2))
