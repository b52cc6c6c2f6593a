"""Number formats: bit layouts, value <-> bits, and the format table. Taught in 01."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import torch

from ._text import text_table

__all__ = [
    "FloatLayout",
    "FLOAT_LAYOUTS",
    "INT_BITS",
    "resolve_dtype",
    "dtype_name",
    "bit_width",
    "to_bits",
    "from_bits",
    "decompose",
    "Decomposition",
    "stored_value",
    "exact_decimal",
    "neighbours",
    "all_finite_values",
    "describe_value",
    "format_table",
    "format_table_text",
]


@dataclass(frozen=True)
class FloatLayout:
    """How many sign, exponent and mantissa bits a float format has, and its exponent bias."""

    exponent_bits: int
    mantissa_bits: int
    sign_bits: int = 1

    @property
    def bits(self) -> int:
        """Total width in bits."""
        return self.sign_bits + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """Exponent bias, 2^(e-1) - 1 (e.g. 127 for fp32)."""
        return 2 ** (self.exponent_bits - 1) - 1


FLOAT_LAYOUTS: dict[torch.dtype, FloatLayout] = {
    torch.float64: FloatLayout(11, 52),
    torch.float32: FloatLayout(8, 23),
    torch.float16: FloatLayout(5, 10),
    torch.bfloat16: FloatLayout(8, 7),
    torch.float8_e4m3fn: FloatLayout(4, 3),
    torch.float8_e5m2: FloatLayout(5, 2),
}

INT_BITS: dict[torch.dtype, int] = {
    torch.uint8: 8,
    torch.int8: 8,
    torch.int16: 16,
    torch.int32: 32,
    torch.int64: 64,
}

# Integer views of the same width: reinterpreting memory is how we read a float's bits.
_VIEW_AS_INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float8_e4m3fn: torch.uint8,
    torch.float8_e5m2: torch.uint8,
}

_ALIASES: dict[str, torch.dtype] = {
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn, "float8_e4m3fn": torch.float8_e4m3fn, "e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2, "float8_e5m2": torch.float8_e5m2, "e5m2": torch.float8_e5m2,
    "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64,
}

_SUPPORTED = tuple(FLOAT_LAYOUTS) + tuple(INT_BITS)


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Turn 'bf16', 'float16', torch.float16 ... into a supported torch dtype, or raise ValueError."""
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in _ALIASES:
            return _ALIASES[key]
    elif isinstance(dtype, torch.dtype) and dtype in _SUPPORTED:
        return dtype
    allowed = ", ".join(dtype_name(d) for d in _SUPPORTED)
    raise ValueError(f"unsupported dtype {dtype!r}; supported: {allowed}")


def dtype_name(dtype: torch.dtype) -> str:
    """'torch.bfloat16' -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


def bit_width(dtype: torch.dtype | str) -> int:
    """Number of bits one value of this dtype occupies in memory."""
    dtype = resolve_dtype(dtype)
    return FLOAT_LAYOUTS[dtype].bits if dtype in FLOAT_LAYOUTS else INT_BITS[dtype]


def _check_int_range(value: int, dtype: torch.dtype) -> None:
    info = torch.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise ValueError(f"{value} does not fit in {dtype_name(dtype)} (range {info.min}..{info.max})")


def _as_scalar_tensor(value: float | int, dtype: torch.dtype) -> torch.Tensor:
    """One value converted to dtype, rounding to nearest (ties to even) like any cast in torch."""
    if dtype in INT_BITS:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not an integer; {dtype_name(dtype)} stores whole numbers only")
        _check_int_range(int(value), dtype)
        return torch.tensor(int(value), dtype=dtype)
    # Going through float64 keeps the one rounding step the one the target format does.
    return torch.tensor(float(value), dtype=torch.float64).to(dtype)


def _raw_int(value: float | int, dtype: torch.dtype) -> int:
    """The bit pattern of value stored as dtype, as a non-negative integer."""
    dtype = resolve_dtype(dtype)
    tensor = _as_scalar_tensor(value, dtype)
    width = bit_width(dtype)
    raw = int(tensor.item()) if dtype in INT_BITS else int(tensor.view(_VIEW_AS_INT[dtype]).item())
    return raw & ((1 << width) - 1)  # two's complement of negatives, as the hardware stores them


def to_bits(value: float | int, dtype: torch.dtype | str) -> str:
    """Bit string (most significant first) of value after storing it in dtype: to_bits(-1, 'int8') == '11111111'."""
    dtype = resolve_dtype(dtype)
    return format(_raw_int(value, dtype), f"0{bit_width(dtype)}b")


def from_bits(bits: str, dtype: torch.dtype | str) -> float | int:
    """Value whose bit pattern in dtype is `bits` (spaces and underscores allowed): inverse of to_bits."""
    dtype = resolve_dtype(dtype)
    clean = bits.replace(" ", "").replace("_", "")
    width = bit_width(dtype)
    if len(clean) != width or set(clean) - {"0", "1"}:
        raise ValueError(f"{dtype_name(dtype)} needs exactly {width} bits of 0/1, got {bits!r}")
    raw = int(clean, 2)
    if dtype in INT_BITS:
        signed = dtype != torch.uint8
        return raw - (1 << width) if signed and raw >> (width - 1) else raw
    view = _VIEW_AS_INT[dtype]
    if view != torch.uint8 and raw >> (width - 1):
        raw -= 1 << width  # store the pattern into a signed integer of the same width
    return torch.tensor(raw, dtype=view).view(dtype).item()


def stored_value(value: float | int, dtype: torch.dtype | str) -> float | int:
    """The value dtype actually keeps for `value` (nearest representable, ties to even)."""
    dtype = resolve_dtype(dtype)
    return from_bits(to_bits(value, dtype), dtype)


def exact_decimal(value: float) -> str:
    """Exact decimal expansion of a binary float: exact_decimal(0.1) is 0.1000000000000000055511151231257827..."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(Decimal(value), "f")


@dataclass(frozen=True)
class Decomposition:
    """A stored float split into its fields, with the formula that gives its value."""

    dtype: torch.dtype
    bits: str
    sign: str
    exponent: str
    mantissa: str
    kind: str  # "normal", "subnormal", "zero", "inf" or "nan"
    value: float

    def formula(self) -> str:
        """The value written as (-1)^s x 2^(e - bias) x 1.m (or the subnormal / special form)."""
        layout = FLOAT_LAYOUTS[self.dtype]
        s = int(self.sign, 2)
        e = int(self.exponent, 2)
        m = int(self.mantissa, 2)
        frac = f"{m}/{2 ** layout.mantissa_bits}"
        if self.kind == "normal":
            return f"(-1)^{s} x 2^({e} - {layout.bias}) x (1 + {frac}) = {self.value!r}"
        if self.kind == "subnormal":
            return f"(-1)^{s} x 2^(1 - {layout.bias}) x (0 + {frac}) = {self.value!r}"
        return f"{self.kind} (special pattern) = {self.value!r}"


def decompose(value: float, dtype: torch.dtype | str) -> Decomposition:
    """Split value, stored as float dtype, into sign / exponent / mantissa bits and classify it."""
    dtype = resolve_dtype(dtype)
    if dtype not in FLOAT_LAYOUTS:
        raise ValueError(f"decompose works on float dtypes; {dtype_name(dtype)} is an integer type (use to_bits)")
    return _decompose_bits(to_bits(value, dtype), dtype)


def _decompose_bits(bits: str, dtype: torch.dtype) -> Decomposition:
    """decompose() of one exact bit pattern (a float format has many NaN patterns; this keeps the one given)."""
    layout = FLOAT_LAYOUTS[dtype]
    sign, exponent, mantissa = bits[0], bits[1 : 1 + layout.exponent_bits], bits[1 + layout.exponent_bits :]
    stored = from_bits(bits, dtype)
    if math.isnan(stored):
        kind = "nan"
    elif math.isinf(stored):
        kind = "inf"
    elif stored == 0:
        kind = "zero"
    elif set(exponent) == {"0"}:
        kind = "subnormal"
    else:
        kind = "normal"
    return Decomposition(dtype, bits, sign, exponent, mantissa, kind, stored)


def _pattern_value(sign: int, magnitude: int, dtype: torch.dtype) -> float:
    width = bit_width(dtype)
    return from_bits(format((sign << (width - 1)) | magnitude, f"0{width}b"), dtype)


def neighbours(value: float, dtype: torch.dtype | str) -> tuple[float, float]:
    """The representable values just below and just above the stored value, like numpy.nextafter.

    Past the ends: inf where the format has it (nextafter(65504, inf) = inf in fp16), nan where it
    has none (float8_e4m3fn's next pattern after 448 is NaN). inf's neighbours are (largest, inf);
    NaN is not ordered, so it has none: (nan, nan).
    """
    dtype = resolve_dtype(dtype)
    if dtype not in FLOAT_LAYOUTS:
        stored = stored_value(value, dtype)
        info = torch.iinfo(dtype)
        return (stored - 1 if stored > info.min else math.nan, stored + 1 if stored < info.max else math.nan)
    stored = stored_value(value, dtype)
    if math.isnan(stored):
        return math.nan, math.nan
    if math.isinf(stored):
        largest = torch.finfo(dtype).max
        return (largest, math.inf) if stored > 0 else (-math.inf, -largest)
    raw = int(to_bits(value, dtype), 2)
    width = bit_width(dtype)
    sign, magnitude = raw >> (width - 1), raw & ((1 << (width - 1)) - 1)
    # On the positive side a larger magnitude is a larger value; on the negative side, a smaller one.
    if sign == 0:
        above = _pattern_value(0, magnitude + 1, dtype)
        below = _pattern_value(0, magnitude - 1, dtype) if magnitude > 0 else _pattern_value(1, 1, dtype)
    else:
        below = _pattern_value(1, magnitude + 1, dtype)
        above = _pattern_value(1, magnitude - 1, dtype) if magnitude > 1 else (
            0.0 if magnitude == 1 else _pattern_value(0, 1, dtype))
    return below, above


def all_finite_values(dtype: torch.dtype | str) -> torch.Tensor:
    """Every finite value a float format of at most 16 bits can hold, sorted, as float64 (-0 dropped)."""
    dtype = resolve_dtype(dtype)
    if dtype not in FLOAT_LAYOUTS or bit_width(dtype) > 16:
        raise ValueError(f"all_finite_values enumerates float formats of 8 or 16 bits, not {dtype_name(dtype)}")
    width = bit_width(dtype)
    patterns = torch.arange(2**width, dtype=torch.int64)
    patterns = torch.where(patterns >= 2 ** (width - 1), patterns - 2**width, patterns) if width == 16 else patterns
    values = patterns.to(_VIEW_AS_INT[dtype]).view(dtype).to(torch.float64)
    values = values[torch.isfinite(values)]
    return torch.unique(values)  # sorted; +0 and -0 compare equal and collapse into one


def _neighbour_text(neighbour: float) -> str:
    # Only float8_e4m3fn, which has no inf, has a NaN pattern next to a finite value (after +-448).
    return "none (the next pattern is NaN)" if math.isnan(neighbour) else repr(neighbour)


def _describe_bits(bits: str, dtype: torch.dtype) -> list[str]:
    """Fields, formula, exact value and neighbours of one bit pattern, one line each."""
    parts = _decompose_bits(bits, dtype)
    lines = [
        f"{dtype_name(dtype)}: sign {parts.sign} | exponent {parts.exponent} | mantissa {parts.mantissa}"
        f"  ({parts.kind})",
        f"value    = {parts.formula()}",
    ]
    if parts.kind == "nan":
        lines.append("stored   = nan: not a number, so it has no neighbours (any arithmetic with it gives nan)")
        return lines
    below, above = neighbours(parts.value, dtype)
    lines += [f"stored   = {exact_decimal(parts.value)}" + ("" if parts.kind == "inf" else " (exactly)"),
              f"below    = {_neighbour_text(below)}, above = {_neighbour_text(above)}"]
    return lines


def describe_value(value: float, dtype: torch.dtype | str) -> str:
    """What storing value in a float dtype does: bits, formula, exact stored value, neighbours, rounding error."""
    parts = decompose(value, dtype)
    lines = _describe_bits(parts.bits, parts.dtype)
    if math.isfinite(value) and math.isinf(parts.value):
        lines.append(f"error    = overflow: {value!r} is beyond the largest finite value "
                     f"{torch.finfo(parts.dtype).max!r}")
    elif math.isfinite(value) and math.isfinite(parts.value):
        error = parts.value - value
        relative = abs(error) / abs(value) if value else 0.0
        lines.append(f"error    = {error:.3e} (relative {relative:.2e})")
    return "\n".join(lines)


_TYPICAL_USE = {
    "FP64": "scientific computing; almost never for neural networks",
    "FP32": "training master weights, optimizer state, reference results",
    "FP16": "inference and mixed-precision training (needs loss scaling)",
    "BF16": "training and inference of LLMs: FP32's range, less precision",
    "FP8 E4M3": "forward-pass weights/activations on recent GPUs",
    "FP8 E5M2": "gradients (need range more than precision)",
    "INT8": "quantized weights and activations (lessons 03-04)",
    "INT4": "quantized LLM weights, 2 per byte (lessons 04-06; FP4/NF4 in 05)",
}

_TABLE_DTYPES: list[tuple[str, torch.dtype | None]] = [
    ("FP32", torch.float32),
    ("FP16", torch.float16),
    ("BF16", torch.bfloat16),
    ("FP8 E4M3", torch.float8_e4m3fn),
    ("FP8 E5M2", torch.float8_e5m2),
    ("INT8", torch.int8),
    ("INT4", None),  # not a torch dtype: 4-bit integers live packed in uint8 (lesson 04)
]


def format_table(include_fp64: bool = False) -> list[dict[str, object]]:
    """One row per format, every number read from torch (finfo/iinfo) or the bit layout, none typed in."""
    rows = []
    entries = ([("FP64", torch.float64)] if include_fp64 else []) + _TABLE_DTYPES
    for name, dtype in entries:
        if dtype is None or dtype in INT_BITS:
            bits = 4 if dtype is None else INT_BITS[dtype]
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            rows.append(dict(name=name, bits=bits, layout=f"two's complement, {bits} bits", min=low, max=high,
                             smallest_normal=None, smallest_subnormal=None, eps=1, decimal_digits=None,
                             exact_digits=None, use=_TYPICAL_USE[name]))
            continue
        info = torch.finfo(dtype)
        layout = FLOAT_LAYOUTS[dtype]
        smallest_subnormal = from_bits("0" * (layout.bits - 1) + "1", dtype)
        rows.append(dict(
            name=name, bits=layout.bits,
            layout=f"1 sign, {layout.exponent_bits} exponent, {layout.mantissa_bits} mantissa",
            min=info.min, max=info.max, smallest_normal=info.smallest_normal,
            smallest_subnormal=smallest_subnormal, eps=info.eps,
            # p = mantissa bits + the implicit 1 significant bits hold p log10(2) decimal digits' worth
            # (7.2 for fp32), but only floor((p - 1) log10(2)) digits survive every round trip
            # decimal -> float -> decimal: C's FLT_DIG = 6, DBL_DIG = 15 (torch.finfo.resolution = 10^-that).
            decimal_digits=round((layout.mantissa_bits + 1) * math.log10(2), 1),
            exact_digits=math.floor(layout.mantissa_bits * math.log10(2)),
            use=_TYPICAL_USE[name]))
    return rows


def _fmt(number: object) -> str:
    if number is None:
        return "-"
    if isinstance(number, int):
        return f"{number:,}"
    return f"{number:.3g}"


def format_table_text(rows: list[dict[str, object]] | None = None) -> str:
    """The format table as aligned plain text (what the lesson prints)."""
    rows = format_table() if rows is None else rows
    header = ["format", "bits", "min", "max", "smallest normal", "smallest subnormal", "eps", "digits",
              "exact digits"]
    body = [[r["name"], str(r["bits"]), _fmt(r["min"]), _fmt(r["max"]), _fmt(r["smallest_normal"]),
             _fmt(r["smallest_subnormal"]), _fmt(r["eps"]), _fmt(r["decimal_digits"]), _fmt(r["exact_digits"])]
            for r in rows]
    return text_table(header, body)
