"""Lesson 08's format table: each format applied as defined, bits/weight as stored, the headroom figure."""

import matplotlib
import pytest
import torch

import helper

matplotlib.use("Agg")


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.Linear(64, 128))


@pytest.mark.parametrize("fmt,bits", [("MXFP8", 8.25), ("MXFP6", 6.25), ("MXFP4", 4.25), ("NF4", 4.5),
                                      ("int4 g32 RTN", 4.5), ("int4 g128 RTN", 4 + 16 / 64)])
def test_bits_per_weight(fmt, bits):
    # int4 g128 on 128- and 64-input layers: groups of 128 and 64 (8,192 weights each), fp16 scales
    _, measured = helper.apply_weight_format(small_model(), fmt)
    expected = (4 + (16 / 64 + 16 / 128) / 2) if fmt == "int4 g128 RTN" else bits
    assert measured == pytest.approx(expected)


def test_nvfp4_bits_include_each_tensor_scale():
    _, bits = helper.apply_weight_format(small_model(), "NVFP4")
    assert bits == pytest.approx(4.5 + 2 * 32 / (2 * 8192))


def test_formats_quantize_a_copy_as_their_functions_do():
    model = small_model()
    quantized, _ = helper.apply_weight_format(model, "MXFP4")
    assert torch.equal(quantized[0].weight, helper.fake_quantize_mx(model[0].weight, "e2m1"))
    quantized, _ = helper.apply_weight_format(model, "NVFP4")
    assert torch.equal(quantized[1].weight, helper.fake_quantize_nvfp4(model[1].weight))
    quantized, _ = helper.apply_weight_format(model, "NF4")
    assert torch.equal(quantized[0].weight, helper.fake_quantize_codebook(model[0].weight, helper.nf4_codebook()))
    assert not torch.equal(quantized[0].weight, model[0].weight)  # the original is untouched


def test_scale_headroom_ranges():
    weight = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    ratios = helper.scale_headroom(weight)
    assert 2 / 3 - 1e-6 <= ratios["MXFP4"].min() and ratios["MXFP4"].max() < 4 / 3
    assert (ratios["NVFP4"] - 1).abs().max() < 0.07  # E4M3 rounds the scale to within 2^-4 relative
    assert (ratios["MXFP4"] > 1).float().mean() > 0.2


def test_plot_and_bad_input():
    fig = helper.plot_scale_headroom(torch.randn(32, 64))
    assert fig.axes[0].get_xlabel().startswith("block absmax")
    with pytest.raises(ValueError, match="fmt"):
        helper.apply_weight_format(small_model(), "FP3")
    with pytest.raises(TypeError, match="model"):
        helper.apply_weight_format("model", "MXFP4")
