import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import helper

INT32 = st.integers(min_value=helper.INT32_MIN, max_value=helper.INT32_MAX)
Q31 = st.integers(min_value=2**30, max_value=2**31 - 1)


def _round_half_away(value: Fraction) -> int:
    """Round a rational to the nearest integer, ties away from zero (gemmlowp's convention)."""
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def _codes(shape, dtype, seed):
    low, high = (-128, 128) if dtype == torch.int8 else (0, 256)
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# The lesson's worked example, exactly.
def test_worked_example_multiplier():
    multiplier = 0.05 * 0.004 / 0.12
    q31, right_shift = helper.quantize_multiplier(multiplier)
    assert (q31, right_shift) == (1832519380, 9)
    assert abs(q31 * 2.0 ** (-31 - right_shift) - multiplier) < multiplier * 2**-31


@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_is_a_q31_mantissa_and_a_shift(multiplier):
    q31, right_shift = helper.quantize_multiplier(multiplier)
    assert 2**30 <= q31 < 2**31
    # M0 is M's mantissa rounded to 31 bits: relative error at most half a unit of 2^-30
    assert abs(Fraction(q31, 2**31) * Fraction(2) ** -right_shift - Fraction(multiplier)) <= \
        Fraction(multiplier) * Fraction(1, 2**30)


def test_quantize_multiplier_renormalises_a_mantissa_that_rounds_to_one():
    assert helper.quantize_multiplier(1 - 2**-40) == (2**30, -1)  # 0.99999... -> 0.5 * 2^1
    assert helper.quantize_multiplier(0.5) == (2**30, 0)
    assert helper.quantize_multiplier(3.0) == (3 * 2**29, -2)


@given(INT32, INT32)
def test_saturating_rounding_doubling_high_mul_is_round_of_ab_over_2_31(a, b):
    result = helper.saturating_rounding_doubling_high_mul(torch.tensor([a]), b).item()
    if a == b == helper.INT32_MIN:
        assert result == helper.INT32_MAX  # the one overflow saturates
    else:
        assert result == _round_half_away(Fraction(a * b, 2**31))


@given(INT32, st.integers(min_value=0, max_value=31))
def test_rounding_divide_by_power_of_two_rounds_to_nearest_ties_away(x, exponent):
    result = helper.rounding_divide_by_power_of_two(torch.tensor([x]), exponent).item()
    assert result == _round_half_away(Fraction(x, 2**exponent))


@settings(max_examples=300)
@given(st.integers(min_value=-(2**24), max_value=2**24), Q31, st.integers(min_value=0, max_value=40))
def test_fixed_point_multiply_is_within_one_of_the_exact_rational(acc, q31, right_shift):
    result = helper.multiply_by_quantized_multiplier(torch.tensor([acc], dtype=torch.int32), q31, right_shift).item()
    exact = Fraction(acc * q31, 2 ** (31 + right_shift))
    # two roundings (to 2^-31, then to an integer): at most 1 off, and never further than 1 from the exact value
    assert abs(result - exact) <= 1
    assert abs(result - _round_half_away(exact)) <= 1


def test_fixed_point_multiply_agrees_with_float_rounding_almost_always():
    acc = torch.arange(-200_000, 200_000, 13, dtype=torch.int32)
    multiplier = 0.0123456
    q31, right_shift = helper.quantize_multiplier(multiplier)
    ours = helper.multiply_by_quantized_multiplier(acc, q31, right_shift)
    exact = torch.round(acc.double() * q31 * 2.0 ** (-31 - right_shift)).to(torch.int32)
    differ = ours != exact
    assert (ours - exact).abs().max().item() <= 1
    assert differ.float().mean().item() < 0.01  # only where the double rounding lands on a tie
    # where they differ, the exact value sits within 2^-(right_shift) of a half: the double-rounding case
    distance = ((acc.double() * q31 * 2.0 ** (-31 - right_shift)).abs().frac() - 0.5).abs()
    assert (distance[differ] <= 2.0**-right_shift).all()


@pytest.mark.parametrize("x_zero_point, w_zero_point", [(0, 0), (37, 0), (0, -5), (200, 3)],
                         ids=["symmetric", "x-zero-point", "w-zero-point", "both"])
def test_int32_accumulator_equals_the_float_matmul_of_the_codes(x_zero_point, w_zero_point):
    q_x = _codes((5, 96), torch.uint8, 0)
    q_w = _codes((7, 96), torch.int8, 1)
    acc = helper.int8_matmul_int32(q_x, q_w, x_zero_point, w_zero_point)
    expected = (q_x.double() - x_zero_point) @ (q_w.double() - w_zero_point).T
    assert acc.dtype == torch.int32 and torch.equal(acc.double(), expected)
    terms = helper.zero_point_terms(q_x, q_w, x_zero_point, w_zero_point)
    assert terms["Z_w rowsum(q_x)"].shape == (5, 1) and terms["Z_x colsum(q_w)"].shape == (1, 7)
    if w_zero_point == 0:
        assert not terms["Z_w rowsum(q_x)"].any()


def test_requantize_matches_float_requantization_to_one_code():
    q_x, q_w = _codes((16, 256), torch.uint8, 2), _codes((32, 256), torch.int8, 3)
    x_scale, x_zero_point, w_scale, y_scale, y_zero_point = 0.02, 100, 0.003, 0.4, 128
    ours = helper.quantized_linear(q_x, x_scale, x_zero_point, q_w, w_scale, 0, y_scale, y_zero_point)
    y = (x_scale * (q_x.double() - x_zero_point)) @ (w_scale * q_w.double()).T  # the float result
    expected = torch.clamp(torch.round(y / y_scale) + y_zero_point, 0, 255)
    assert ours.dtype == torch.uint8
    assert (ours.double() - expected).abs().max() <= 1
    assert (ours.double() != expected).float().mean() < 0.01
    # and dequantized, the output is within one output step (plus the clamp) of the float result
    inside = (expected > 0) & (expected < 255)
    assert ((y_scale * (ours.double() - y_zero_point) - y)[inside].abs() <= 1.5 * y_scale).all()


@pytest.mark.parametrize("engine", [e for e in ("fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines])
def test_against_pytorch_quantized_linear(engine):
    """PyTorch's kernels requantize in fp32 (round(acc * M)); ours in fixed point: equal except where the
    fixed point's double rounding flips a near-tie, and then by one code."""
    q_x, q_w = _codes((32, 256), torch.uint8, 4), _codes((64, 256), torch.int8, 5)
    x_scale, x_zero_point, w_scale, y_scale, y_zero_point = 0.02, 120, 0.0015, 0.25, 128
    reference = helper.pytorch_quantized_linear(q_x, x_scale, x_zero_point, q_w, w_scale, y_scale, y_zero_point,
                                               engine=engine)
    ours = helper.quantized_linear(q_x, x_scale, x_zero_point, q_w, w_scale, 0, y_scale, y_zero_point)
    acc = helper.int8_matmul_int32(q_x, q_w, x_zero_point, 0).double()
    float_requantized = torch.clamp(torch.round(acc * (x_scale * w_scale / y_scale)) + y_zero_point, 0, 255)
    assert torch.equal(reference.double(), float_requantized)  # PyTorch = float requantization of our int32
    assert (ours.int() - reference.int()).abs().max() <= 1
    assert (ours != reference).float().mean() < 0.01


def test_bias_is_quantized_with_the_accumulator_scale():
    q_x, q_w = _codes((4, 64), torch.uint8, 6), _codes((8, 64), torch.int8, 7)
    bias = torch.linspace(-1, 1, 8)
    with_bias = helper.quantized_linear(q_x, 0.02, 128, q_w, 0.01, 0, 0.05, 128, bias=bias)
    y = (0.02 * (q_x.double() - 128)) @ (0.01 * q_w.double()).T + bias.double()
    expected = torch.clamp(torch.round(y / 0.05) + 128, 0, 255)
    assert (with_bias.double() - expected).abs().max() <= 1


@pytest.mark.parametrize("call, error, message", [
    (lambda: helper.quantize_multiplier(0.0), ValueError, "multiplier must be a finite number > 0"),
    (lambda: helper.quantize_multiplier(float("nan")), ValueError, "multiplier must be a finite"),
    (lambda: helper.quantize_multiplier("0.1"), TypeError, "multiplier must be a float"),
    (lambda: helper.quantize_multiplier(1e-30), ValueError, "too far from 1"),
    (lambda: helper.multiply_by_quantized_multiplier(torch.tensor([1]), 2**29, 3), ValueError, "q31 must be"),
    (lambda: helper.multiply_by_quantized_multiplier(torch.tensor([1.5]), 2**30, 3), TypeError, "acc must hold"),
    (lambda: helper.multiply_by_quantized_multiplier(torch.tensor([2**31]), 2**30, 3), ValueError, "outside int32"),
    (lambda: helper.multiply_by_quantized_multiplier(torch.tensor([2**30]), 2**30, -2), ValueError, "overflows"),
    (lambda: helper.rounding_divide_by_power_of_two(torch.tensor([1]), 32), ValueError, "exponent must be"),
    (lambda: helper.int8_matmul_int32(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int8)), TypeError,
     "q_x must hold int8 or uint8"),
    (lambda: helper.int8_matmul_int32(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 4, dtype=torch.int8)),
     ValueError, "q_w has 4"),
    (lambda: helper.int8_matmul_int32(torch.zeros(3, dtype=torch.int8), torch.zeros(2, 3, dtype=torch.int8)),
     ValueError, "q_x must be 2-D"),
    (lambda: helper.int8_matmul_int32(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.int8),
                                      300), ValueError, "x_zero_point 300 is outside"),
    (lambda: helper.int8_matmul_int32(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.int8),
                                      1.5), TypeError, "x_zero_point must be an int"),
    (lambda: helper.requantize(torch.tensor([1]), 2**30, 1, 0, torch.int16), TypeError, "dtype must be"),
    (lambda: helper.quantized_linear(torch.zeros(1, 2, dtype=torch.uint8), 0.0, 0,
                                     torch.zeros(1, 2, dtype=torch.int8), 1.0, 0, 1.0, 0), ValueError, "x_scale"),
    (lambda: helper.quantized_linear(torch.zeros(1, 2, dtype=torch.uint8), 1.0, 0,
                                     torch.zeros(3, 2, dtype=torch.int8), 1.0, 0, 1.0, 0, bias=torch.zeros(2)),
     ValueError, "bias must be a tensor of shape (3,)"),
    (lambda: helper.pytorch_quantized_linear(torch.zeros(1, 2, dtype=torch.int8), 1.0, 0,
                                             torch.zeros(1, 2, dtype=torch.int8), 1.0, 1.0, 0), TypeError,
     "uint8 activations and int8 weights"),
    (lambda: helper.pytorch_quantized_linear(torch.zeros(1, 2, dtype=torch.uint8), 1.0, 0,
                                             torch.zeros(1, 2, dtype=torch.int8), 1.0, 1.0, 0, engine="tpu"),
     ValueError, "engine 'tpu' is not available"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_accumulator_overflow_is_reported():
    big = torch.full((1, 140_000), -128, dtype=torch.int8)
    with pytest.raises(ValueError, match="overflows int32"):
        helper.int8_matmul_int32(big, big)
