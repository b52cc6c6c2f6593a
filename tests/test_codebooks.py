import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helper.codebooks import (bin_counts, bin_edges, codebook_bits_per_parameter, bnb_fp4_codebook, codebook_mse,
                              dequantize_blockwise, dequantize_double, double_quantize, fake_quantize_codebook,
                              fp4_e2m1_codebook, int4_codebook, nf4_codebook, nf4_expected_mse, quantize_blockwise)

bnb = pytest.importorskip("bitsandbytes.functional")

# bitsandbytes/functional.py, get_4bit_type("nf4"): the 16 values QLoRA publishes
PUBLISHED_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]


def test_nf4_computed_from_normal_quantiles_equals_the_published_table():
    ours = nf4_codebook()
    assert torch.allclose(ours, torch.tensor(PUBLISHED_NF4), rtol=0, atol=2e-7)
    assert torch.allclose(ours, bnb.get_4bit_type("nf4", device="cpu"), rtol=0, atol=2e-7)
    assert ours[7] == 0 and (ours > 0).sum() == 8 and (ours < 0).sum() == 7


def test_fp4_codebooks():
    e2m1 = fp4_e2m1_codebook()
    assert e2m1[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6] and torch.equal(e2m1[8:], -e2m1[:8])
    assert torch.equal(fp4_e2m1_codebook(normalized=True), e2m1 / 6)
    assert torch.equal(bnb_fp4_codebook(), bnb.get_4bit_type("fp4", device="cpu"))
    assert sorted(bnb_fp4_codebook()[:8].mul(12).tolist()) == [0, 0.0625, 2, 3, 4, 6, 8, 12]
    assert int4_codebook().unique().numel() == 15


def test_bin_edges_and_counts():
    levels = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    assert bin_edges(levels).tolist() == [-0.5, 0.25, 0.75]
    counts = bin_counts(torch.tensor([-0.9, -0.4, 0.1, 0.3, 0.6, 0.8, 1.0]), levels)
    assert counts.tolist() == [1, 2, 2, 2]
    x = torch.randn(64 * 256, generator=torch.Generator().manual_seed(0))
    codes, absmax = quantize_blockwise(x, nf4_codebook())
    normalized = x.reshape(-1, 64) / absmax.unsqueeze(1)
    counts = bin_counts(normalized, nf4_codebook())
    assert counts.sum() == x.numel()
    assert torch.equal(counts, torch.bincount(codes.long(), minlength=16))  # nf4 is sorted: code = bin


@pytest.mark.parametrize("quant_type, codebook", [("nf4", nf4_codebook()), ("fp4", bnb_fp4_codebook())])
def test_blockwise_matches_bitsandbytes(quant_type, codebook):
    x = torch.randn(64 * 512, generator=torch.Generator().manual_seed(1))
    codes, absmax = quantize_blockwise(x, codebook, 64)
    packed, state = bnb.quantize_4bit(x, blocksize=64, quant_type=quant_type, compress_statistics=False)
    bnb_codes = torch.stack([packed.flatten() >> 4, packed.flatten() & 15], dim=1).flatten()  # high nibble first
    assert torch.equal(absmax, state.absmax)
    differ = codes != bnb_codes
    # bitsandbytes' CPU kernel writes fp4 code 8 (-0) for small positive values, ours code 0 (+0): same value
    assert (codebook[codes[differ].long()] == 0).all() and (codebook[bnb_codes[differ].long()] == 0).all()
    assert differ.float().mean() < (0.01 if quant_type == "fp4" else 1e-9)
    ours = dequantize_blockwise(codes, absmax, codebook, x.shape)
    theirs = bnb.dequantize_4bit(packed, state).flatten()
    assert torch.allclose(ours, theirs, rtol=0, atol=2e-7 * absmax.max().item())  # NF4 table: 1 ulp apart


def test_double_quantization_matches_bitsandbytes_closely():
    x = torch.randn(64 * 1024, generator=torch.Generator().manual_seed(2))
    codes, absmax = quantize_blockwise(x, nf4_codebook(), 64)
    restored = dequantize_double(*double_quantize(absmax))
    packed, state = bnb.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
    theirs_absmax = bnb.dequantize_blockwise(state.absmax, state.state2) + state.offset
    same = torch.isclose(restored, theirs_absmax, rtol=1e-6, atol=0).float().mean().item()
    assert same > 0.99  # a handful of constants sit on a tie of the 8-bit map's nearest level
    assert (restored - absmax).abs().max() < 0.01 * absmax.max()


def test_bits_per_parameter():
    assert codebook_bits_per_parameter() == 4.5
    assert codebook_bits_per_parameter(double_quant=True) == 4 + 8 / 64 + 32 / (64 * 256)
    assert round(codebook_bits_per_parameter(double_quant=True), 3) == 4.127
    with pytest.raises(ValueError, match="must be positive"):
        codebook_bits_per_parameter(block_size=0)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.sampled_from([32, 64]), st.floats(1e-3, 1e3), st.integers(0, 2**31 - 1))
def test_round_trip_error_is_at_most_half_the_largest_gap(blocks, block_size, magnitude, seed):
    x = torch.randn(blocks * block_size, generator=torch.Generator().manual_seed(seed)) * magnitude
    for codebook in (nf4_codebook(), bnb_fp4_codebook()):
        codes, absmax = quantize_blockwise(x, codebook, block_size)
        x_hat = dequantize_blockwise(codes, absmax, codebook, x.shape)
        gap = codebook.unique().diff().max().item()
        bound = (gap / 2 * absmax.repeat_interleave(block_size)) * (1 + 1e-5) + 1e-6
        assert ((x_hat - x).abs() <= bound).all()
        assert torch.equal(x_hat.reshape(-1, block_size).abs().amax(1), absmax)  # the max is exact


def test_mse_ordering_and_theory():
    x = torch.randn(2**18, generator=torch.Generator().manual_seed(0))
    nf4, fp4, int4 = (codebook_mse(x, c) for c in (nf4_codebook(), bnb_fp4_codebook(), int4_codebook()))
    assert nf4 < int4 < fp4
    assert math.isclose(nf4, nf4_expected_mse(nf4_codebook()), rel_tol=0.02)


def test_fake_quantize_keeps_shape_and_dtype_and_bad_input_is_clear():
    w = torch.randn(8, 64, dtype=torch.bfloat16)
    out = fake_quantize_codebook(w, nf4_codebook(), double_quant=True)
    assert out.shape == w.shape and out.dtype == w.dtype
    with pytest.raises(ValueError, match="x is empty"):
        quantize_blockwise(torch.zeros(0), nf4_codebook())
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_blockwise(torch.full((64,), float("inf")), nf4_codebook())
    with pytest.raises(ValueError, match="block_size 64 does not divide the number of values 100"):
        quantize_blockwise(torch.ones(100), nf4_codebook())
    with pytest.raises(ValueError, match="a codebook is a 1-D tensor"):
        quantize_blockwise(torch.ones(64), torch.ones(1))
    with pytest.raises(ValueError, match="must be a floating-point tensor"):
        quantize_blockwise(torch.ones(64, dtype=torch.int32), nf4_codebook())
    zeros_codes, zeros_absmax = quantize_blockwise(torch.zeros(64), nf4_codebook())
    assert torch.equal(dequantize_blockwise(zeros_codes, zeros_absmax, nf4_codebook(), (64,)), torch.zeros(64))


def test_model_swap_and_entropy():
    from helper.codebooks import code_entropy_bits, codebook_quantize_model

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    model.add_module("lm_head", torch.nn.Linear(64, 64))
    before = model.lm_head.weight.clone()
    first = model[0].weight.clone()
    codebook_quantize_model(model, nf4_codebook())
    assert torch.equal(model.lm_head.weight, before)
    assert torch.equal(model[0].weight, fake_quantize_codebook(first, nf4_codebook()))
    assert code_entropy_bits(torch.ones(16)) == 4.0 and code_entropy_bits(torch.tensor([5, 0, 0])) == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: bin_counts(torch.tensor([0.1, float("nan")]), nf4_codebook()), "x_normalized contains NaN or Inf"),
    (lambda: bin_counts([0.1], nf4_codebook()), "x_normalized must be a torch.Tensor"),
    (lambda: bin_counts(torch.zeros(3), torch.tensor([0.0, float("nan")])), "codebook contains NaN or Inf"),
    (lambda: bin_counts(torch.zeros(3), [0.0, 1.0]), "codebook must be a torch.Tensor"),
    (lambda: nf4_expected_mse(torch.tensor([0.0, float("inf")])), "codebook contains NaN or Inf"),
    (lambda: nf4_expected_mse(nf4_codebook(), block_size=0), r"block_size must be an integer in \[16, "),
    (lambda: nf4_expected_mse(nf4_codebook(), block_size=1), r"block_size must be an integer in \[16, "),
    (lambda: nf4_expected_mse(nf4_codebook(), grid=10**9), r"grid must be an integer in \[2, 100,000\]"),
    (lambda: quantize_blockwise(torch.ones(64), nf4_codebook(), block_size=6.4), "block_size must be an integer"),
    (lambda: dequantize_blockwise(torch.tensor([16], dtype=torch.uint8), torch.ones(1), nf4_codebook(), (1,)),
     r"codes must index the codebook's 16 levels \(0..15\), got 16..16"),
    (lambda: dequantize_blockwise(torch.tensor([0.5]), torch.ones(1), nf4_codebook(), (1,)),
     "codes must be integer indices"),
    (lambda: dequantize_blockwise(torch.tensor([1]), torch.tensor([float("nan")]), nf4_codebook(), (1,)),
     "absmax contains NaN or Inf"),
    (lambda: dequantize_blockwise(torch.tensor([1]), torch.ones(1), nf4_codebook(), "64"), "shape must be a tuple"),
    (lambda: double_quantize(torch.tensor([1.0, float("nan")])), "absmax contains NaN or Inf"),
    (lambda: codebook_bits_per_parameter(4, 64.5), "block_size must be an integer"),
    (lambda: codebook_bits_per_parameter(4, 64, double_quant="False"), "double_quant must be True or False"),
], ids=["nan-values", "list-values", "nan-codebook", "list-codebook", "inf-codebook-mse", "block-zero", "block-one",
        "huge-grid", "float-block", "code-out-of-range", "float-codes", "nan-absmax", "string-shape", "dq-nan",
        "float-block-bits", "string-double-quant"])
def test_odd_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_code_entropy_of_no_counts_is_an_error():
    from helper.codebooks import code_entropy_bits

    for counts in (torch.zeros(16), torch.tensor([3, -1]), torch.tensor([1.0, float("nan")])):
        with pytest.raises(ValueError, match="counts must be finite, non-negative code counts with a positive sum"):
            code_entropy_bits(counts)


def test_more_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="code_bits must be an integer <= 1,073,741,824"):
        codebook_bits_per_parameter(10**400)
    with pytest.raises(ValueError, match=r"absmax must be 1-D, one value per block, got shape \(2, 1\)"):
        dequantize_blockwise(torch.zeros(2, dtype=torch.uint8), torch.ones(2, 1), nf4_codebook(), (2,))


def test_double_quant_must_be_a_boolean():
    with pytest.raises(ValueError, match="double_quant must be True or False"):
        fake_quantize_codebook(torch.randn(64), nf4_codebook(), double_quant="False")
    from helper.codebooks import codebook_quantize_model

    with pytest.raises(ValueError, match="double_quant must be True or False"):
        codebook_quantize_model(torch.nn.Sequential(torch.nn.Linear(64, 64)), nf4_codebook(), double_quant="no")


@pytest.mark.parametrize("name", ["nf4", "fp4"])
def test_bisection_finds_argmins_codes_at_midpoints_and_ends(name):
    """quantize_blockwise bisects a sorted codebook: the same codes as argmin, ties to the lower code."""
    from helper.codebooks import _nearest_codes_argmin, _nearest_codes_sorted

    torch.manual_seed(0)
    codebook = (nf4_codebook() if name == "nf4" else bnb_fp4_codebook()).unique()  # strictly increasing
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    weight = torch.cat([torch.randn(64 * 300) * 0.05, torch.randn(64 * 20) ** 3,
                        midpoints.repeat(64)[:64 * (midpoints.numel())] * 0.7, torch.zeros(64)]).reshape(-1, 64)
    weight[320:320 + midpoints.numel(), 0] = 0.7  # blocks of midpoints x 0.7, absmax 0.7: on the boundaries
    normalized = weight / weight.abs().amax(1, keepdim=True).clamp_min(1e-30)
    assert torch.equal(_nearest_codes_sorted(normalized, codebook), _nearest_codes_argmin(normalized, codebook))
    codes, _ = quantize_blockwise(weight, codebook, 64)
    assert torch.equal(codes, _nearest_codes_argmin(normalized, codebook).reshape(-1))

