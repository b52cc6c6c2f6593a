import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import helper
from helper.dtypes import FLOAT_LAYOUTS, INT_BITS

FLOATS = list(FLOAT_LAYOUTS)
INTS = list(INT_BITS)
ids = helper.dtype_name


# The lesson's worked examples, exactly.
@pytest.mark.parametrize("dtype, expected", [
    (torch.float16, "0.333251953125"),
    (torch.bfloat16, "0.333984375"),
    (torch.float32, "0.3333333432674407958984375"),
    (torch.float8_e4m3fn, "0.34375"),
    (torch.float8_e5m2, "0.3125"),
], ids=["fp16", "bf16", "fp32", "e4m3", "e5m2"])
def test_one_third_is_stored_as_lesson_says(dtype, expected):
    assert helper.exact_decimal(helper.stored_value(1 / 3, dtype)) == expected


@pytest.mark.parametrize("value, dtype, bits", [
    (-1, torch.int8, "11111111"),
    (-128, torch.int8, "10000000"),
    (127, torch.int8, "01111111"),
    (255, torch.uint8, "11111111"),
    (-2, torch.int16, "1111111111111110"),
    (1.0, torch.float32, "00111111100000000000000000000000"),
    (-2.5, torch.float16, "1100000100000000"),
    (1.0, torch.bfloat16, "0011111110000000"),
    (448.0, torch.float8_e4m3fn, "01111110"),
])
def test_known_bit_patterns(value, dtype, bits):
    assert helper.to_bits(value, dtype) == bits
    assert helper.from_bits(bits, dtype) == value


@pytest.mark.parametrize("dtype", FLOATS, ids=ids)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_float_bits_round_trip(dtype, data):
    width = helper.bit_width(dtype)
    raw = data.draw(st.integers(0, 2**width - 1))
    bits = format(raw, f"0{width}b")
    value = helper.from_bits(bits, dtype)
    if math.isnan(value):
        return  # many NaN patterns exist; torch may canonicalise them
    assert helper.to_bits(value, dtype) == bits


@pytest.mark.parametrize("dtype", INTS, ids=ids)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_int_bits_round_trip_and_twos_complement(dtype, data):
    info = torch.iinfo(dtype)
    value = data.draw(st.integers(info.min, info.max))
    bits = helper.to_bits(value, dtype)
    assert helper.from_bits(bits, dtype) == value
    assert int(bits, 2) == value % 2 ** helper.bit_width(dtype)  # two's complement by definition


@pytest.mark.parametrize("dtype", FLOATS, ids=ids)
@settings(max_examples=200, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_stored_value_matches_torch_cast(dtype, x):
    expected = torch.tensor(x, dtype=torch.float64).to(dtype).item()
    got = helper.stored_value(x, dtype)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize("dtype", FLOATS, ids=ids)
@settings(max_examples=200, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=16))
def test_decompose_formula_rebuilds_value(dtype, x):
    parts = helper.decompose(x, dtype)
    layout = FLOAT_LAYOUTS[dtype]
    sign = -1 if parts.sign == "1" else 1
    exponent, mantissa = int(parts.exponent, 2), int(parts.mantissa, 2)
    if parts.kind == "normal":
        rebuilt = sign * 2.0 ** (exponent - layout.bias) * (1 + mantissa / 2**layout.mantissa_bits)
    elif parts.kind in ("subnormal", "zero"):
        rebuilt = sign * 2.0 ** (1 - layout.bias) * (mantissa / 2**layout.mantissa_bits)
    else:
        return
    assert rebuilt == parts.value


@pytest.mark.parametrize("dtype, nextafter", [
    (torch.float32, lambda x, d: np.nextafter(np.float32(x), np.float32(d))),
    (torch.float16, lambda x, d: np.nextafter(np.float16(x), np.float16(d))),
    (torch.float64, lambda x, d: np.nextafter(x, d)),
], ids=["fp32", "fp16", "fp64"])
@settings(max_examples=200, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=16, allow_subnormal=True))
def test_neighbours_match_numpy_nextafter(dtype, nextafter, x):
    below, above = helper.neighbours(x, dtype)
    stored = helper.stored_value(x, dtype)
    assert above == float(nextafter(stored, math.inf))
    assert below == float(nextafter(stored, -math.inf))


def test_neighbours_of_int():
    assert helper.neighbours(5, torch.int8) == (4, 6)
    low, high = helper.neighbours(127, torch.int8)
    assert low == 126 and math.isnan(high)


def test_all_finite_values_count_and_ends():
    e4m3 = helper.all_finite_values(torch.float8_e4m3fn)
    assert len(e4m3) == 253  # 256 patterns - 2 NaN - one duplicate zero
    assert e4m3.max().item() == torch.finfo(torch.float8_e4m3fn).max
    fp16 = helper.all_finite_values(torch.float16)
    assert len(fp16) == 2**16 - 2 * 1024 - 1  # minus NaN/inf patterns (exponent all ones) and -0
    assert torch.all(fp16[1:] > fp16[:-1])


@pytest.mark.parametrize("name, dtype", [("FP32", torch.float32), ("FP16", torch.float16),
                                         ("BF16", torch.bfloat16), ("FP8 E4M3", torch.float8_e4m3fn),
                                         ("FP8 E5M2", torch.float8_e5m2)])
def test_format_table_rows_come_from_torch(name, dtype):
    row = next(r for r in helper.format_table() if r["name"] == name)
    info = torch.finfo(dtype)
    assert (row["min"], row["max"], row["eps"], row["smallest_normal"]) == (info.min, info.max, info.eps,
                                                                            info.smallest_normal)
    assert row["bits"] == info.bits
    # smallest subnormal = smallest normal / 2^mantissa_bits
    assert row["smallest_subnormal"] == info.smallest_normal / 2 ** FLOAT_LAYOUTS[dtype].mantissa_bits


def test_format_table_integers_and_text():
    rows = {r["name"]: r for r in helper.format_table()}
    assert (rows["INT8"]["min"], rows["INT8"]["max"]) == (torch.iinfo(torch.int8).min, torch.iinfo(torch.int8).max)
    assert (rows["INT4"]["min"], rows["INT4"]["max"], rows["INT4"]["bits"]) == (-8, 7, 4)
    text = helper.format_table_text()
    assert text.splitlines()[0].startswith("format") and "FP8 E4M3" in text
    assert any(r["name"] == "FP64" for r in helper.format_table(include_fp64=True))


def test_describe_value_mentions_everything():
    text = helper.describe_value(1 / 3, "fp16")
    assert "0.333251953125" in text and "0.3330078125" in text and "normal" in text


def test_exact_decimal():
    assert helper.exact_decimal(0.1) == format(Decimal(0.1), "f")
    assert helper.exact_decimal(float("inf")) == "inf"


# Bad input: a clear ValueError, never a deep torch traceback.
@pytest.mark.parametrize("call, message", [
    (lambda: helper.to_bits(1.0, torch.complex64), "unsupported dtype"),
    (lambda: helper.to_bits(1.0, "int3"), "supported: float64"),
    (lambda: helper.to_bits(300, torch.int8), "does not fit in int8"),
    (lambda: helper.to_bits(float("nan"), torch.int8), "not an integer"),
    (lambda: helper.to_bits(1.5, torch.int16), "not an integer"),
    (lambda: helper.from_bits("0101", torch.float16), "needs exactly 16 bits"),
    (lambda: helper.from_bits("2" * 8, torch.int8), "needs exactly 8 bits"),
    (lambda: helper.decompose(3, torch.int8), "integer type"),
    (lambda: helper.all_finite_values(torch.float32), "8 or 16 bits"),
], ids=["complex", "int3", "overflow", "nan-int", "fraction-int", "short-bits", "non-binary", "decompose-int",
        "enumerate-fp32"])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_special_values_are_classified():
    assert helper.decompose(float("nan"), "fp16").kind == "nan"
    assert helper.decompose(float("inf"), "bf16").kind == "inf"
    assert helper.decompose(70000.0, "fp16").kind == "inf"  # overflow past 65504
    # e4m3fn has no infinity, and torch's cast saturates: inf and 1000 both become 448
    assert helper.stored_value(float("inf"), "e4m3") == helper.stored_value(1000.0, "e4m3") == 448.0
    assert helper.decompose(float("nan"), "e4m3").kind == "nan"
    assert helper.decompose(1e-6, "fp16").kind == "subnormal"
    assert helper.decompose(-0.0, "fp16").bits == "1" + "0" * 15


# Special values: neighbours as numpy.nextafter gives them, and none for NaN.
@pytest.mark.parametrize("dtype, nextafter", [
    (torch.float32, lambda x, d: np.nextafter(np.float32(x), np.float32(d))),
    (torch.float16, lambda x, d: np.nextafter(np.float16(x), np.float16(d))),
    (torch.float64, lambda x, d: np.nextafter(x, d)),
], ids=["fp32", "fp16", "fp64"])
@pytest.mark.parametrize("x", [math.inf, -math.inf], ids=["inf", "-inf"])
def test_neighbours_of_infinity_match_numpy(dtype, nextafter, x):
    below, above = helper.neighbours(x, dtype)
    assert (below, above) == (float(nextafter(x, -math.inf)), float(nextafter(x, math.inf)))


@pytest.mark.parametrize("dtype", FLOATS, ids=ids)
def test_nan_has_no_neighbours(dtype):
    assert all(math.isnan(n) for n in helper.neighbours(math.nan, dtype))
    text = helper.describe_value(math.nan, dtype)
    assert "(nan)" in text and "no neighbours" in text and "above" not in text and "-0.0" not in text


def test_describe_value_at_the_ends_of_the_range():
    assert "below    = 65504.0, above = inf" in helper.describe_value(math.inf, "fp16")
    assert "overflow: 70000.0 is beyond the largest finite value 65504.0" in helper.describe_value(70000.0, "fp16")
    # e4m3fn has no infinity: the pattern after 448 is NaN
    assert "below    = 416.0, above = none (the next pattern is NaN)" in helper.describe_value(448.0, "e4m3")


_EXACT = {r["name"]: r["exact_digits"] for r in helper.format_table()}
_NAMES = {torch.float32: "FP32", torch.float16: "FP16", torch.bfloat16: "BF16", torch.float8_e4m3fn: "FP8 E4M3",
          torch.float8_e5m2: "FP8 E5M2"}


# Decimal digits: p log10(2) is the average-ish count, floor((p - 1) log10(2)) the exact one (C's FLT_DIG).
@pytest.mark.parametrize("dtype", FLOATS, ids=ids)
def test_exact_digits_are_torch_and_numpys_precision(dtype):
    p = FLOAT_LAYOUTS[dtype].mantissa_bits + 1
    name = {**_NAMES, torch.float64: "FP64"}[dtype]
    row = next(r for r in helper.format_table(include_fp64=True) if r["name"] == name)
    assert row["exact_digits"] == round(-math.log10(torch.finfo(dtype).resolution))
    assert row["decimal_digits"] == round(p * math.log10(2), 1)
    numpy_type = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}.get(dtype)
    if numpy_type is not None:
        assert row["exact_digits"] == np.finfo(numpy_type).precision


def test_fp32_exact_digits_is_c_flt_dig():
    rows = {r["name"]: r for r in helper.format_table(include_fp64=True)}
    assert (rows["FP32"]["exact_digits"], rows["FP64"]["exact_digits"]) == (6, 15)  # FLT_DIG, DBL_DIG in <float.h>
    assert rows["FP32"]["decimal_digits"] == 7.2


def _survives(text: str, dtype: torch.dtype) -> bool:
    """Does the decimal `text` come back unchanged, at its own number of digits, after a trip through dtype?"""
    digits = len(Decimal(text).as_tuple().digits)
    return f"{helper.stored_value(float(text), dtype):.{digits - 1}e}" == f"{float(text):.{digits - 1}e}"




@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=ids)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_decimal_with_exact_digits_survives(dtype, data):
    digits = _EXACT[_NAMES[dtype]]
    info = torch.finfo(dtype)
    significand = data.draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    leading = data.draw(st.integers(math.ceil(math.log10(info.smallest_normal)), math.floor(math.log10(info.max)) - 1))
    assert _survives(f"{significand}e{leading - digits + 1}", dtype)  # leading digit at 10^leading


@pytest.mark.parametrize("text, dtype", [("8.589973e9", torch.float32), ("8193", torch.float16),
                                         ("257", torch.bfloat16), ("7e-5", torch.float8_e5m2)], ids=ids)
def test_one_more_digit_is_not_always_kept(text, dtype):
    assert len(Decimal(text).as_tuple().digits) == _EXACT[_NAMES[dtype]] + 1
    assert not _survives(text, dtype)


def test_e4m3_keeps_one_digit_inside_its_narrow_range():
    # floor((p - 1) log10 2) = 0 for E4M3, a bound for any exponent range; between its smallest normal
    # (0.015625) and its largest value (448) every one-digit decimal happens to survive.
    info = torch.finfo(torch.float8_e4m3fn)
    decimals = [f"{d}e{e}" for d in range(1, 10) for e in range(-2, 3)
                if info.smallest_normal <= d * 10.0**e <= info.max]
    assert len(decimals) == 39 and all(_survives(t, torch.float8_e4m3fn) for t in decimals)
