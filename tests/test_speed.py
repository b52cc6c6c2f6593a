import pytest
import torch
from torch import nn

import helper
from helper.speed import (arithmetic_intensity, current_rss_bytes, decode_bound_tokens_per_s, decode_bytes_per_token,
                          greedy_decode_timing, kv_cache_bytes, measure_bandwidth, measure_matmul_flops,
                          median_of_runs, peak_rss_bytes, release_memory, reset_peak_rss, ridge_point, roofline)


def test_median_of_runs_never_counts_the_warm_up():
    values = iter([1000.0, 5.0, 1.0, 3.0])  # the first call is the slow warm-up
    calls = []

    def measure():
        calls.append(1)
        return next(values)

    result = median_of_runs(measure, repeats=3, warmup=1)
    assert result == {"median": 3.0, "runs": [5.0, 1.0, 3.0]}
    assert len(calls) == 4


def test_median_of_runs_takes_the_median_of_each_quantity():
    values = iter([{"a": 100.0, "b": 0.0}, {"a": 1.0, "b": 9.0}, {"a": 3.0, "b": 7.0}, {"a": 2.0, "b": 8.0}])
    result = median_of_runs(lambda: next(values), repeats=3)
    assert result["median"] == {"a": 2.0, "b": 8.0} and len(result["runs"]) == 3


def test_median_of_runs_needs_three_runs_and_a_callable():
    with pytest.raises(ValueError, match="repeats must be an integer in"):
        median_of_runs(lambda: 1.0, repeats=2)
    with pytest.raises(TypeError, match="measure must be callable"):
        median_of_runs(3.0)
    assert median_of_runs(lambda: 2.0, repeats=5, warmup=0)["runs"] == [2.0] * 5


def test_decode_bound_is_bandwidth_over_bytes():
    assert decode_bound_tokens_per_s(100e6, 10e9) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="bandwidth"):
        decode_bound_tokens_per_s(100e6, 0)
    with pytest.raises(ValueError, match="bytes_per_token"):
        decode_bound_tokens_per_s(-1, 10e9)


@pytest.mark.parametrize("tokens, bytes_per_weight, expected", [(1, 4, 0.5), (1, 0.5, 4.0), (64, 2, 64.0)])
def test_arithmetic_intensity(tokens, bytes_per_weight, expected):
    assert arithmetic_intensity(tokens, bytes_per_weight) == pytest.approx(expected)


def test_roofline_is_the_minimum_of_the_two_roofs():
    peak, bandwidth = 1e12, 1e10  # ridge at 100 FLOP/byte
    assert ridge_point(peak, bandwidth) == pytest.approx(100.0)
    assert roofline(1.0, peak, bandwidth) == pytest.approx(1e10)
    assert roofline(1000.0, peak, bandwidth) == pytest.approx(1e12)
    curve = roofline(torch.tensor([1.0, 100.0, 1e4]), peak, bandwidth)
    assert torch.allclose(curve, torch.tensor([1e10, 1e12, 1e12]))
    with pytest.raises(ValueError, match="peak_flops"):
        roofline(1.0, -1, bandwidth)


def test_kv_cache_bytes_of_smollm2():
    # SmolLM2-135M: 30 layers, 3 KV heads of 64, fp32: 2 * 30 * 3 * 64 * 4 = 46,080 bytes per token
    assert kv_cache_bytes(30, 3, 64, 1) == 46_080
    assert kv_cache_bytes(30, 3, 64, 100, bytes_per_value=2) == 2_304_000
    with pytest.raises(ValueError, match="tokens"):
        kv_cache_bytes(30, 3, 64, 0)


def test_decode_bytes_count_matmul_weights_and_tied_heads_once():
    embedding = nn.Embedding(10, 4)
    model = nn.Sequential(embedding, nn.Linear(4, 3), nn.LayerNorm(3))
    assert decode_bytes_per_token(model) == 4 * 3 * 4  # the embedding is indexed, the LayerNorm is 1-D
    head = nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied: the output layer reads the whole table
    tied = nn.Sequential(embedding, head, nn.Linear(10, 4, bias=False))
    assert decode_bytes_per_token(tied) == (10 * 4 + 4 * 10) * 4
    quantized = helper.W8A16Linear.from_linear(nn.Linear(64, 8))
    assert decode_bytes_per_token(quantized) == 64 * 8 + 8 * 4  # int8 codes + fp32 scales
    with pytest.raises(ValueError, match="no matmul weights"):
        decode_bytes_per_token(nn.Sequential(nn.Embedding(3, 2)))


def test_bandwidth_and_flops_are_positive_and_plausible():
    rates = measure_bandwidth(n_bytes=8 << 20, repeats=3)
    assert set(rates) == {"copy", "triad"}
    assert all(1e8 < rate < 1e13 for rate in rates.values())
    assert 1e8 < measure_matmul_flops(size=128, repeats=3) < 1e14
    with pytest.raises(ValueError, match="n_bytes"):
        measure_bandwidth(n_bytes=10)


class _Counter(nn.Module):
    """A fake causal LM: next token = last token + 1; counts its forwards and their lengths."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths = []

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        self.lengths.append(input_ids.shape[1])
        logits = nn.functional.one_hot((input_ids + 1) % 50, 50).float()
        return type("Output", (), {"logits": logits, "past_key_values": past_key_values})()


def test_greedy_decode_timing_runs_one_prefill_then_single_tokens():
    model = _Counter()
    result = greedy_decode_timing(model, torch.tensor([[3, 4, 5], [7, 8, 9]]), new_tokens=4)
    assert model.lengths == [3, 1, 1, 1]
    assert result["tokens"].tolist() == [[6, 7, 8, 9], [10, 11, 12, 13]]
    assert result["decode_tokens_per_s"] == pytest.approx(2 * 3 / result["decode_s"])
    assert result["prefill_tokens_per_s"] == pytest.approx(2 * 3 / result["prefill_s"])
    with pytest.raises(ValueError, match="new_tokens"):
        greedy_decode_timing(model, torch.tensor([[1]]), new_tokens=1)
    with pytest.raises(ValueError, match="input_ids"):
        greedy_decode_timing(model, torch.tensor([1, 2]), new_tokens=3)


def test_peak_rss_sees_an_allocation_and_resets():
    release_memory()
    reset_peak_rss()
    before = peak_rss_bytes()
    assert before == pytest.approx(current_rss_bytes(), rel=0.05)
    block = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
    assert peak_rss_bytes() - before >= 60 << 20
    del block
    release_memory()
    reset_peak_rss()
    assert peak_rss_bytes() < before + (32 << 20)
