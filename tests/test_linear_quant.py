import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import helper
from helper import QuantScheme

BITS = [2, 3, 4, 5, 6, 7, 8]


def _reference(quantize_fn, *args):
    with warnings.catch_warnings():  # torch's quantized dtypes are deprecated, but still the reference
        warnings.simplefilter("ignore")
        return quantize_fn(*args)


# The lesson's worked examples, exactly.
def test_worked_example_range_0_3_two_bits():
    quantized = helper.quantize_tensor(torch.tensor([0.0, 1.4, 3.0, 2.6]),
                                       QuantScheme(bits=2, symmetric=False, signed=False))
    assert quantized.scale.item() == 1.0 and quantized.zero_point.item() == 0
    assert quantized.codes().tolist() == [0, 1, 3, 3]
    assert quantized.dequantize().tolist() == [0.0, 1.0, 3.0, 3.0]


def test_symmetric_int8_example():
    scale, zero_point = helper.choose_qparams_symmetric(torch.tensor(2.54), bits=8)
    assert scale.item() == pytest.approx(0.02) and zero_point.item() == 0


@pytest.mark.parametrize("bits, signed, restricted, expected", [
    (8, True, False, (-128, 127)), (8, True, True, (-127, 127)), (8, False, False, (0, 255)),
    (4, True, False, (-8, 7)), (4, True, True, (-7, 7)), (2, True, False, (-2, 1)), (16, True, False, (-32768, 32767)),
])
def test_integer_range(bits, signed, restricted, expected):
    assert helper.integer_range(bits, signed, restricted) == expected


# Agreement with PyTorch's own quantizers (same scale and zero-point -> same integers and values).
@pytest.mark.parametrize("signed, torch_dtype", [(True, torch.qint8), (False, torch.quint8)], ids=["int8", "uint8"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_per_tensor_matches_torch_quantize_per_tensor(signed, torch_dtype, symmetric):
    if symmetric and not signed:
        pytest.skip("symmetric schemes are signed")
    weight = torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 2 + 0.3
    ours = helper.quantize_tensor(weight, QuantScheme(bits=8, symmetric=symmetric, signed=signed))
    reference = _reference(torch.quantize_per_tensor, weight, ours.scale.item(), int(ours.zero_point.item()),
                           torch_dtype)
    assert torch.equal(ours.codes().to(torch.int32), reference.int_repr().to(torch.int32))
    assert torch.equal(ours.dequantize(), reference.dequantize())


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("signed, torch_dtype", [(True, torch.qint8), (False, torch.quint8)], ids=["int8", "uint8"])
def test_per_channel_matches_torch_quantize_per_channel(axis, signed, torch_dtype):
    weight = torch.randn(48, 80, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3, 80)
    ours = helper.quantize_tensor(weight, QuantScheme(bits=8, symmetric=False, signed=signed,
                                                      granularity="per_channel", axis=axis))
    reference = _reference(torch.quantize_per_channel, weight, ours.scale.flatten().double(),
                           ours.zero_point.flatten().long(), axis, torch_dtype)
    assert torch.equal(ours.codes().to(torch.int32), reference.int_repr().to(torch.int32))
    assert torch.equal(ours.dequantize(), reference.dequantize())


# Properties over shapes, bit widths and schemes.
schemes = st.builds(
    lambda bits, symmetric, signed, restricted: QuantScheme(bits=bits, symmetric=symmetric,
                                                            signed=signed or symmetric,
                                                            restricted=restricted and symmetric),
    st.sampled_from(BITS), st.booleans(), st.booleans(), st.booleans())
tensors = st.integers(1, 6).flatmap(lambda rows: st.integers(1, 12).flatmap(
    lambda cols: st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=rows * cols,
                          max_size=rows * cols).map(lambda v: torch.tensor(v).reshape(rows, cols))))


@settings(max_examples=300, deadline=None)
@given(x=tensors, scheme=schemes, granularity=st.sampled_from(["per_tensor", "per_channel"]), axis=st.sampled_from([0, 1]))
def test_round_trip_is_within_half_a_step_and_codes_in_range(x, scheme, granularity, axis):
    scheme = QuantScheme(**{**scheme.__dict__, "granularity": granularity, "axis": axis})
    quantized = helper.quantize_tensor(x, scheme)
    codes = quantized.codes().to(torch.int32)
    assert codes.min() >= scheme.qmin and codes.max() <= scheme.qmax
    scale = helper.from_rows(quantized.scale.expand_as(quantized.data), x.shape, scheme)
    # min-max range: every value is inside it, so the error is at most half a step (plus float rounding)
    assert torch.all((quantized.dequantize() - x).abs() <= scale / 2 * (1 + 1e-5) + 1e-6)
    if scheme.symmetric:
        assert torch.all(quantized.zero_point == 0)
    assert torch.all(torch.isfinite(quantized.dequantize()))


@settings(max_examples=300, deadline=None)
@given(x=tensors, scheme=schemes)
def test_zero_round_trips_exactly(x, scheme):
    x = torch.cat([x.flatten(), torch.zeros(1)])
    assert helper.quantize_tensor(x, scheme).dequantize()[-1].item() == 0.0


@settings(max_examples=200, deadline=None)
@given(data=st.data(), bits=st.sampled_from(BITS), symmetric=st.booleans())
def test_per_group_with_whole_rows_equals_per_channel(data, bits, symmetric):
    rows, cols = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 16))
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 1000))))
    grouped = helper.quantize_tensor(x, QuantScheme(bits=bits, symmetric=symmetric, granularity="per_group",
                                                    group_size=cols))
    channel = helper.quantize_tensor(x, QuantScheme(bits=bits, symmetric=symmetric, granularity="per_channel",
                                                    axis=0))
    assert torch.equal(grouped.codes(), channel.codes()) and torch.equal(grouped.dequantize(), channel.dequantize())


@pytest.mark.parametrize("group_size", [4, 8, 16])
def test_per_group_has_one_scale_per_group(group_size):
    x = torch.randn(6, 32)
    quantized = helper.quantize_tensor(x, QuantScheme(bits=4, granularity="per_group", group_size=group_size))
    assert quantized.scale.shape == (6 * 32 // group_size, 1) and quantized.dequantize().shape == x.shape


def test_sixteen_bits_and_storage_dtypes():
    x = torch.randn(100)
    assert helper.quantize_tensor(x, QuantScheme(bits=4)).data.dtype == torch.int8
    assert helper.quantize_tensor(x, QuantScheme(bits=8, symmetric=False, signed=False)).data.dtype == torch.uint8
    sixteen = helper.quantize_tensor(x, QuantScheme(bits=16))
    assert helper.quantization_error(x, sixteen.dequantize())["sqnr_db"] > 85


def test_all_equal_and_all_zero_tensors_have_no_nan():
    for value in (0.0, 2.5, -3.0):
        x = torch.full((4, 8), value)
        for scheme in (QuantScheme(bits=4), QuantScheme(bits=4, symmetric=False),
                       QuantScheme(bits=8, symmetric=False, signed=False, granularity="per_channel")):
            x_hat = helper.quantize_tensor(x, scheme).dequantize()
            assert torch.all(torch.isfinite(x_hat)) and torch.allclose(x_hat, x), (value, scheme)


def test_dead_channel_does_not_poison_the_others():
    x = torch.randn(3, 16)
    x[1] = 0
    x_hat = helper.quantize_tensor(x, QuantScheme(bits=8, granularity="per_channel")).dequantize()
    assert torch.all(x_hat[1] == 0) and torch.isfinite(x_hat).all()


def test_fake_quantize_forward_and_straight_through_gradient():
    scheme = QuantScheme(bits=4)
    x = torch.linspace(-1, 1, 50, requires_grad=True)
    out = helper.fake_quantize(x, scheme)
    assert torch.equal(out.detach(), helper.quantize_tensor(x.detach(), scheme).dequantize())
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(50))  # identity inside the range
    # with a clip range, values outside it get zero gradient
    x2 = torch.linspace(-2, 2, 9, requires_grad=True)
    helper.fake_quantize(x2, scheme, clip=(torch.tensor(-1.0), torch.tensor(1.0))).sum().backward()
    assert x2.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


def test_quantization_error_metrics():
    x = torch.tensor([1.0, -1.0])
    assert helper.quantization_error(x, x)["sqnr_db"] == float("inf")
    metrics = helper.quantization_error(x, torch.tensor([1.1, -1.0]))
    assert metrics["max_abs"] == pytest.approx(0.1) and metrics["mse"] == pytest.approx(0.005)
    assert metrics["sqnr_db"] == pytest.approx(10 * torch.log10(torch.tensor(1 / 0.005)).item())


@pytest.mark.parametrize("call, message", [
    (lambda: helper.quantize_tensor(torch.tensor([]), QuantScheme()), "empty"),
    (lambda: helper.quantize_tensor(torch.tensor([1.0, float("nan")]), QuantScheme()), "NaN or Inf"),
    (lambda: helper.quantize_tensor(torch.tensor([1.0, float("inf")]), QuantScheme()), "NaN or Inf"),
    (lambda: helper.quantize_tensor(torch.tensor([1, 2]), QuantScheme()), "floating-point"),
    (lambda: helper.quantize_tensor([1.0, 2.0], QuantScheme()), "must be a torch.Tensor"),
    (lambda: QuantScheme(bits=1), "bits must be one of"),
    (lambda: QuantScheme(bits=9), "bits must be one of"),
    (lambda: QuantScheme(bits=32), "bits must be one of"),
    (lambda: QuantScheme(granularity="per_row"), "granularity must be one of"),
    (lambda: QuantScheme(granularity="per_group"), "per_group needs a group_size"),
    (lambda: QuantScheme(symmetric=True, signed=False), "symmetric scheme uses signed"),
    (lambda: QuantScheme(symmetric=False, restricted=True), "restricted applies to symmetric"),
    (lambda: helper.quantize_tensor(torch.randn(4, 576), QuantScheme(granularity="per_group", group_size=128)),
     "group_size 128 does not divide the last dimension 576"),
    (lambda: helper.quantize_tensor(torch.randn(4, 5), QuantScheme(granularity="per_channel", axis=2)),
     "axis 2 is out of range"),
    (lambda: helper.quantization_error(torch.zeros(2), torch.zeros(3)), "shapes differ"),
], ids=["empty", "nan", "inf", "int-input", "list-input", "bits1", "bits9", "bits32", "granularity", "no-group",
        "sym-unsigned", "restricted-asym", "group-divides", "axis", "error-shapes"])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: QuantScheme(symmetric="False"), "symmetric must be True or False"),
    (lambda: QuantScheme(signed="no", symmetric=False), "signed must be True or False"),
    (lambda: QuantScheme(restricted=1), "restricted must be True or False"),
    (lambda: QuantScheme(bits=8.0), "bits must be one of"),
    (lambda: QuantScheme(bits="8"), "bits must be one of"),
    (lambda: QuantScheme(axis=1.5), "axis must be an integer"),
    (lambda: QuantScheme(granularity="per_group", group_size=2.5), "group_size must be an integer"),
    (lambda: helper.integer_range(4, signed="False"), "signed must be True or False"),
    (lambda: helper.quantize_tensor(torch.randn(4), "int8"), "scheme must be a QuantScheme"),
    (lambda: helper.quantize_tensor(torch.randn(4), QuantScheme(), clip=(1.0, -1.0)),
     "clip min must be <= clip max"),
    (lambda: helper.quantize_tensor(torch.randn(4), QuantScheme(), clip=(float("nan"), 1.0)),
     "clip min contains NaN or Inf"),
    (lambda: helper.quantize_tensor(torch.randn(4), QuantScheme(), clip=(-1.0, float("inf"))),
     "clip max contains NaN or Inf"),
    (lambda: helper.quantize_tensor(torch.randn(4), QuantScheme(), clip=1.0), "clip must be a \\(min, max\\) pair"),
    (lambda: helper.quantize_tensor(torch.randn(4), QuantScheme(), clip=("a", "b")), "clip must hold numbers"),
    (lambda: helper.quantize_tensor(torch.randn(3, 4), QuantScheme(granularity="per_channel"),
                                    clip=(-torch.ones(2), torch.ones(2))), "clip min has 2 values; the tensor has 3"),
], ids=["sym-string", "signed-string", "restricted-int", "bits-float", "bits-string", "axis-float", "group-float",
        "range-signed-string", "scheme-string", "clip-reversed", "clip-nan", "clip-inf", "clip-scalar",
        "clip-strings", "clip-rows"])
def test_odd_values_are_refused_not_reinterpreted(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_per_row_clip_range_still_works():
    x = torch.randn(3, 8)
    quantized = helper.quantize_tensor(x, QuantScheme(granularity="per_channel"), clip=(-torch.ones(3), torch.ones(3)))
    assert quantized.dequantize().abs().max() <= 128 / 127  # -128 is one step past -1


@pytest.mark.parametrize("x, x_hat, message", [
    (0, torch.zeros(2), "x must be a torch.Tensor"),
    (torch.zeros(2), [0.0, 0.0], "x_hat must be a torch.Tensor"),
    (torch.tensor([1.0, float("nan")]), torch.zeros(2), "x contains NaN or Inf"),
    (torch.zeros(2), torch.tensor([float("inf"), 0.0]), "x_hat contains NaN or Inf"),
    (torch.zeros(0), torch.zeros(0), "x is empty"),
], ids=["int-x", "list-x-hat", "nan-x", "inf-x-hat", "empty"])
def test_quantization_error_refuses_what_has_no_error_metric(x, x_hat, message):
    with pytest.raises(ValueError, match=message):
        helper.quantization_error(x, x_hat)
