import pytest
import torch
from torch import nn

import helper
from helper.kernels import Int4WeightOnlyLinear, Int8WeightOnlyLinear, to_fused_kernels


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(576, 192)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_int8_kernel_matches_our_w8a16(linear, dtype):
    ours = helper.W8A16Linear.from_linear(linear)
    fused = Int8WeightOnlyLinear.from_w8a16(ours)
    x = torch.randn(2, 5, 576).to(dtype)
    expected, got = ours(x), fused(x)
    assert got.shape == (2, 5, 192) and got.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(got.float(), expected.float(), atol=tolerance * expected.abs().max().item())


@pytest.mark.parametrize("group_size", [32, 64, 192])
def test_int4_kernel_matches_our_w4a16(linear, group_size):
    ours = helper.W4A16Linear.from_linear(linear, group_size=group_size)
    if group_size not in helper.INT4_KERNEL_GROUP_SIZES:
        with pytest.raises(ValueError, match="group_size must be one of"):
            Int4WeightOnlyLinear.from_w4a16(ours)
        return
    fused = Int4WeightOnlyLinear.from_w4a16(ours)
    x = torch.randn(7, 576)
    assert torch.allclose(fused(x), ours(x), atol=1e-5 * ours(x).abs().max().item())
    assert fused.packed_weights.numel() == 192 * 576 // 2  # two codes per byte


def test_int4_kernel_refuses_asymmetric_layers_and_bad_inputs(linear):
    with pytest.raises(ValueError, match="symmetric"):
        Int4WeightOnlyLinear.from_w4a16(helper.W4A16Linear.from_linear(linear, group_size=64, symmetric=False))
    with pytest.raises(TypeError, match="W4A16Linear"):
        Int4WeightOnlyLinear.from_w4a16(linear)
    with pytest.raises(ValueError, match="codes 0..15"):
        Int4WeightOnlyLinear(torch.full((4, 64), 16), torch.ones(4, 2), 32, None)
    fused = Int4WeightOnlyLinear.from_w4a16(helper.W4A16Linear.from_linear(linear, group_size=64))
    with pytest.raises(ValueError, match="end in 576 features"):
        fused(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        fused(torch.ones(3, 576, dtype=torch.long))


def test_to_fused_kernels_swaps_every_quantized_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
    model[0] = helper.W8A16Linear.from_linear(model[0])
    model[2] = helper.W4A16Linear.from_linear(model[2], group_size=64)
    x = torch.randn(3, 64)
    expected = model(x)
    to_fused_kernels(model)
    assert [type(m).__name__ for m in model] == ["Int8WeightOnlyLinear", "ReLU", "Int4WeightOnlyLinear"]
    assert torch.allclose(model(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="no W8A16Linear"):
        to_fused_kernels(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="W8A16Linear"):
        Int8WeightOnlyLinear.from_w8a16(nn.Linear(2, 2))
