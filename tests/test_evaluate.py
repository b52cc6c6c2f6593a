import pytest
import torch

import helper


def test_logit_error_in_float32():
    reference = torch.tensor([1.0, 2.0, 3.0])
    other = torch.tensor([1.0, 2.5, 2.0], dtype=torch.bfloat16)
    assert helper.logit_error(reference, other) == {"mean_abs": 0.5, "max_abs": 1.0}


def test_mean_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert helper.mean_cosine(a, b) == pytest.approx(0.5)


def test_weight_differences_are_zero_for_a_copy():
    import copy

    model = helper.DummyModel()
    assert set(helper.weight_differences(model, copy.deepcopy(model)).values()) == {0.0}


@pytest.mark.parametrize("call, message", [
    (lambda: helper.logit_error(torch.zeros(2), torch.zeros(3)), "shapes differ"),
    (lambda: helper.mean_cosine(torch.zeros(0, 2), torch.zeros(0, 2)), "empty"),
    (lambda: helper.weight_differences(helper.DummyModel(), torch.nn.Linear(2, 2)), "differ in structure"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture(scope="module")
def tiny_llm():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


def test_perplexity_is_exp_of_mean_nll_exactly(tiny_llm):
    import math

    windows = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        losses = [tiny_llm(input_ids=w.unsqueeze(0), labels=w.unsqueeze(0)).loss.item() for w in windows]
    # equal-length windows: mean NLL over all tokens = mean of the per-window means
    expected = math.exp(sum(losses) / len(losses))
    assert helper.perplexity(tiny_llm, windows) == pytest.approx(expected, rel=1e-6)
    assert helper.perplexity(tiny_llm, windows, batch_size=2) == pytest.approx(expected, rel=1e-6)


def test_next_token_agreement_of_a_model_with_itself(tiny_llm):
    windows = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    result = helper.next_token_agreement(tiny_llm, tiny_llm, windows)
    assert result["top1"] == 1.0 and abs(result["kl"]) < 1e-6


def test_reference_text_and_windows(smollm2):
    _, tokenizer = smollm2
    text = helper.reference_text()
    assert text.startswith(text.split("\n")[0]) and len(text) > 400_000
    windows = helper.token_windows(tokenizer, n_windows=2, window=512)
    assert windows.shape == (2, 512)
    assert tokenizer(text, return_tensors="pt")["input_ids"].shape[1] == 113_108
    with pytest.raises(ValueError, match="room for 220 windows of 512, not 300"):
        helper.token_windows(tokenizer, n_windows=300)


def test_smollm2_perplexity_slice(smollm2):
    # first 2 of the lesson's 16 windows (the full 14.94 on 16 runs in `make bench` and in lesson 04)
    model, tokenizer = smollm2
    assert helper.perplexity(model, helper.token_windows(tokenizer, n_windows=2)) == pytest.approx(15.0, abs=1.5)


def test_perplexity_bad_input(tiny_llm):
    with pytest.raises(ValueError, match="windows must be"):
        helper.perplexity(tiny_llm, torch.zeros(5, dtype=torch.long))


def test_linear_weight_bits_for_each_kind_of_layer():
    from torch import nn

    from helper.layers import W4A16Linear, W8A16Linear

    linear = nn.Linear(64, 32)
    assert helper.linear_weight_bits(nn.Sequential(linear))["bits_per_weight"] == 32
    assert helper.linear_weight_bits(nn.Sequential(W8A16Linear.from_linear(linear)))["bits_per_weight"] == \
        8 + 32 / 64  # one fp32 scale per row of 64 weights
    four = helper.linear_weight_bits(nn.Sequential(W4A16Linear.from_linear(linear, group_size=32)))
    assert four["bits_per_weight"] == 4 + 32 / 32 and four["weights"] == 64 * 32
    with pytest.raises(ValueError, match="no linear layers"):
        helper.linear_weight_bits(nn.Sequential(nn.ReLU()))


def test_linear_weight_bits_sees_quanto():
    from optimum.quanto import freeze, qint8, quantize
    from torch import nn

    model = nn.Sequential(nn.Linear(64, 32))
    quantize(model, weights=qint8)
    freeze(model)
    assert helper.linear_weight_bits(model)["bits_per_weight"] == 8 + 32 / 64


@pytest.mark.parametrize("windows, kwargs, message", [
    (torch.zeros(1, 65, dtype=torch.long), {}, "windows of 65 tokens are longer than the model's context of 64"),
    (torch.full((1, 8), 64), {}, r"windows must be token ids in 0..63, got ids from 64 to 64"),
    (torch.full((1, 8), -1), {}, r"windows must be token ids in 0..63, got ids from -1"),
    (torch.zeros(0, 8, dtype=torch.long), {}, r"windows is empty \(shape \(0, 8\)\)"),
    (torch.zeros(2, 8), {}, "windows must hold integer token ids, got dtype torch.float32"),
    ([[1, 2, 3]], {}, "windows must be \\(n, length >= 2\\) token ids, got list"),
    (torch.zeros(2, 8, dtype=torch.long), {"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    (torch.zeros(2, 8, dtype=torch.long), {"batch_size": 1.5}, "batch_size must be an integer"),
    (torch.zeros(2, 8, dtype=torch.long), {"progress": "False"}, "progress must be True or False"),
], ids=["beyond-context", "id-beyond-vocab", "negative-id", "no-windows", "float-ids", "list", "batch-zero",
        "batch-float", "progress-string"])
def test_perplexity_refuses_windows_the_model_cannot_read(tiny_llm, windows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        helper.perplexity(tiny_llm, windows, **kwargs)


def test_agreement_and_windows_check_their_arguments(tiny_llm, smollm2):
    with pytest.raises(ValueError, match="windows must be token ids in 0..63"):
        helper.next_token_agreement(tiny_llm, tiny_llm, torch.full((1, 8), 100))
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        helper.perplexity("gpt2", torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="n_windows must be an integer"):
        helper.token_windows(smollm2[1], n_windows=2.5)
