"""Linear (affine) quantization: scale, zero-point, quantize, dequantize, granularity. Taught in 03.

    q = clamp(round(x / scale) + zero_point, qmin, qmax)        x_hat = (q - zero_point) * scale

Worked example (lesson 03): range [0, 3] to 2-bit unsigned integers 0..3 gives scale = 3 / 3 = 1.0 and
zero_point = 0, so 1.4 -> q = 1 -> 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .validation import check_bool, check_choice, check_float_tensor, check_int_in_range

__all__ = [
    "SUPPORTED_BITS",
    "QuantScheme",
    "QuantizedTensor",
    "integer_range",
    "choose_qparams_asymmetric",
    "choose_qparams_symmetric",
    "quantize",
    "dequantize",
    "quantize_with_offset",
    "dequantize_with_offset",
    "to_rows",
    "from_rows",
    "choose_qparams",
    "quantize_tensor",
    "fake_quantize",
    "quantization_error",
]

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
GRANULARITIES = ("per_tensor", "per_channel", "per_group")


@dataclass(frozen=True)
class QuantScheme:
    """What to quantize to (the "what", kept apart from the functions that do it).

    bits: 2..8 or 16. symmetric: zero_point = 0 and scale from max|x| (else from min and max).
    signed: integers centred on 0 (int8 -128..127) or not (uint8 0..255); symmetric is always signed.
    restricted: symmetric grid -(2^(b-1) - 1)..2^(b-1) - 1, dropping the lone most-negative level.
    granularity: one (scale, zero_point) per tensor, per channel along `axis`, or per group of
    `group_size` consecutive values along the last dimension.
    zero_point_domain: "int" (x_hat = (q - zero_point) * scale, 0.0 exact) or "float" for asymmetric
    unsigned schemes: x_hat = q * scale + min, the "scale and min" of GGUF Q4_1 and optimum-quanto's qint4.
    """

    bits: int = 8
    symmetric: bool = True
    granularity: str = "per_tensor"
    axis: int = 0
    group_size: int | None = None
    signed: bool = True
    restricted: bool = False
    zero_point_domain: str = "int"

    def __post_init__(self) -> None:
        check_choice(self.bits, "bits", SUPPORTED_BITS)
        for flag in ("symmetric", "signed", "restricted"):
            check_bool(getattr(self, flag), flag)  # the string "False" would count as True
        check_int_in_range(self.axis, "axis", -64, 63)
        if self.group_size is not None:
            check_int_in_range(self.group_size, "group_size", 1)
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "per_group" and (self.group_size is None or self.group_size < 1):
            raise ValueError(f"per_group needs a group_size >= 1, got {self.group_size}")
        if self.symmetric and not self.signed:
            raise ValueError("a symmetric scheme uses signed integers (zero_point 0 in the middle); set signed=True")
        if self.restricted and not self.symmetric:
            raise ValueError("restricted applies to symmetric schemes only")
        if self.zero_point_domain not in ("int", "float"):
            raise ValueError(f"zero_point_domain must be 'int' or 'float', got {self.zero_point_domain!r}")
        if self.zero_point_domain == "float" and (self.symmetric or self.signed):
            raise ValueError("a float zero-point (scale and min) needs symmetric=False, signed=False")

    @property
    def qmin(self) -> int:
        """Smallest integer code."""
        return integer_range(self.bits, self.signed, self.restricted)[0]

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        return integer_range(self.bits, self.signed, self.restricted)[1]


def integer_range(bits: int, signed: bool = True, restricted: bool = False) -> tuple[int, int]:
    """(qmin, qmax): int4 -> (-8, 7); restricted int4 -> (-7, 7); unsigned int4 -> (0, 15)."""
    check_choice(bits, "bits", SUPPORTED_BITS)
    check_bool(signed, "signed")
    check_bool(restricted, "restricted")
    if not signed:
        return 0, 2**bits - 1
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if restricted else -qmax - 1), qmax


def _storage_dtype(bits: int, signed: bool) -> torch.dtype:
    # Sub-byte codes live one per int8 here; packing them two or four per byte comes in lesson 04.
    if bits <= 8:
        return torch.int8 if signed else torch.uint8
    return torch.int32  # 16-bit codes (signed or not) fit in int32 with room for the arithmetic


def choose_qparams_asymmetric(rmin: torch.Tensor, rmax: torch.Tensor, bits: int,
                              signed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """scale = (rmax - rmin) / (qmax - qmin); zero_point = qmin - round(rmin / scale), an integer.

    The range is widened to include 0 so that 0.0 is exactly representable (padding, ReLU zeros).
    A zero range (all values 0) gets scale 1.0 instead of a division by zero.
    """
    qmin, qmax = integer_range(bits, signed)
    rmin = torch.clamp(torch.as_tensor(rmin, dtype=torch.float32), max=0.0)
    rmax = torch.clamp(torch.as_tensor(rmax, dtype=torch.float32), min=0.0)
    scale = (rmax - rmin) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(qmin - torch.round(rmin / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point


def choose_qparams_symmetric(absmax: torch.Tensor, bits: int,
                             restricted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """scale = absmax / qmax, zero_point = 0: e.g. absmax 2.54 to int8 gives scale 0.02."""
    _, qmax = integer_range(bits, True, restricted)
    absmax = torch.as_tensor(absmax, dtype=torch.float32)
    scale = absmax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, torch.zeros_like(scale, dtype=torch.int32)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """q = clamp(round(x / scale) + zero_point, qmin, qmax), as integers (round half to even)."""
    q = torch.clamp(torch.round(x.float() / scale) + zero_point, qmin, qmax)
    bits = max(1, math.ceil(math.log2(qmax - qmin + 1)))
    return q.to(_storage_dtype(bits, qmin < 0))


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """x_hat = (q - zero_point) * scale, in float32."""
    return (q.to(torch.int32) - zero_point).float() * scale


def quantize_with_offset(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, qmax: int) -> torch.Tensor:
    """q = clamp(round((x - offset) / scale), 0, qmax): unsigned codes above a float minimum."""
    q = torch.clamp(torch.round((x.float() - offset) / scale), 0, qmax)
    return q.to(_storage_dtype(max(1, math.ceil(math.log2(qmax + 1))), signed=False))


def dequantize_with_offset(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """x_hat = q * scale + offset, in float32."""
    return q.float() * scale + offset


def to_rows(x: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """View x as rows that each get one (scale, zero_point): (1, n), (channels, n/channels) or (n/g, g)."""
    if not isinstance(scheme, QuantScheme):
        raise ValueError(f"scheme must be a QuantScheme, got {type(scheme).__name__}")
    if scheme.granularity == "per_tensor":
        return x.reshape(1, -1)
    if scheme.granularity == "per_channel":
        if not -x.dim() <= scheme.axis < x.dim():
            raise ValueError(f"axis {scheme.axis} is out of range for a tensor with {x.dim()} dimensions")
        return x.movedim(scheme.axis, 0).reshape(x.shape[scheme.axis], -1)  # (channels, rest)
    if x.dim() == 0 or x.shape[-1] % scheme.group_size:
        last = x.shape[-1] if x.dim() else 1
        raise ValueError(f"group_size {scheme.group_size} does not divide the last dimension {last}")
    return x.reshape(-1, scheme.group_size)  # (numel / g, g)


def from_rows(rows: torch.Tensor, shape: torch.Size, scheme: QuantScheme) -> torch.Tensor:
    """Inverse of to_rows: back to the original shape."""
    if scheme.granularity == "per_channel":
        moved = list(shape)
        moved.insert(0, moved.pop(scheme.axis))
        return rows.reshape(moved).movedim(0, scheme.axis)
    return rows.reshape(shape)


def choose_qparams(x: torch.Tensor, scheme: QuantScheme,
                   clip: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero_point), shape (rows, 1), from min/max of each row or from a given clip range."""
    check_float_tensor(x, "x")
    rows = to_rows(x.detach().float(), scheme)
    if clip is None:
        rmin, rmax = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    else:
        rmin, rmax = _check_clip(clip, rows.shape[0])
    if scheme.symmetric:
        return choose_qparams_symmetric(torch.maximum(rmin.abs(), rmax.abs()), scheme.bits, scheme.restricted)
    if scheme.zero_point_domain == "float":
        scale = (rmax - rmin) / scheme.qmax
        return torch.where(scale > 0, scale, torch.ones_like(scale)), rmin  # the offset is the row's minimum
    return choose_qparams_asymmetric(rmin, rmax, scheme.bits, scheme.signed)


def _check_clip(clip: object, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A calibrated (min, max) pair: finite, one value or one per row, and min <= max everywhere."""
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise ValueError(f"clip must be a (min, max) pair, got {type(clip).__name__}")
    try:
        rmin = torch.as_tensor(clip[0], dtype=torch.float32).reshape(-1, 1)
        rmax = torch.as_tensor(clip[1], dtype=torch.float32).reshape(-1, 1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"clip must hold numbers or tensors, got {clip!r:.60}") from None
    for name, bound in (("clip min", rmin), ("clip max", rmax)):
        if bound.shape[0] not in (1, rows):
            raise ValueError(f"{name} has {bound.shape[0]} values; the tensor has {rows} rows (give 1 or {rows})")
        if not torch.isfinite(bound).all():
            raise ValueError(f"{name} contains NaN or Inf")
    if (rmin > rmax).any():
        raise ValueError(f"clip min must be <= clip max, got min {rmin.max().item():g} > max {rmax.min().item():g}")
    return rmin, rmax


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes (rows view) + per-row scale and zero_point + what is needed to rebuild x."""

    data: torch.Tensor  # (rows, n) integer codes
    scale: torch.Tensor  # (rows, 1) float32
    zero_point: torch.Tensor  # (rows, 1) int32, or float32 offsets when zero_point_domain == "float"
    shape: torch.Size
    scheme: QuantScheme

    def dequantize(self) -> torch.Tensor:
        """x_hat in the original shape (float32)."""
        if self.scheme.zero_point_domain == "float":
            rows = dequantize_with_offset(self.data, self.scale, self.zero_point)
        else:
            rows = dequantize(self.data, self.scale, self.zero_point)
        return from_rows(rows, self.shape, self.scheme)

    def codes(self) -> torch.Tensor:
        """The integer codes in the original shape."""
        return from_rows(self.data, self.shape, self.scheme)


def quantize_tensor(x: torch.Tensor, scheme: QuantScheme,
                    clip: tuple[torch.Tensor, torch.Tensor] | None = None) -> QuantizedTensor:
    """Quantize x with scheme; clip = per-row (min, max) from calibration, else each row's own min/max."""
    scale, zero_point = choose_qparams(x, scheme, clip)
    rows = to_rows(x.detach().float(), scheme)
    if scheme.zero_point_domain == "float":
        data = quantize_with_offset(rows, scale, zero_point, scheme.qmax)
    else:
        data = quantize(rows, scale, zero_point, scheme.qmin, scheme.qmax)
    return QuantizedTensor(data, scale, zero_point, x.shape, scheme)


class _FakeQuantize(torch.autograd.Function):
    """Forward: dequantize(quantize(x)). Backward: straight-through inside the range, zero outside."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
                qmax: int) -> torch.Tensor:
        unclamped = torch.round(x / scale) + zero_point
        ctx.save_for_backward((unclamped >= qmin) & (unclamped <= qmax))
        return (torch.clamp(unclamped, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (inside,) = ctx.saved_tensors
        # round() has zero gradient almost everywhere; the STE pretends it is the identity, so
        # training can move weights across grid points. Clamped values get no gradient.
        return grad_output * inside, None, None, None, None


def fake_quantize(x: torch.Tensor, scheme: QuantScheme,
                  clip: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """x rounded to its quantization grid but kept in float, differentiable with a straight-through estimator."""
    if scheme.zero_point_domain != "int":
        raise ValueError("fake_quantize supports integer zero-points (zero_point_domain='int')")
    scale, zero_point = choose_qparams(x, scheme, clip)
    rows = to_rows(x.float(), scheme)
    out = _FakeQuantize.apply(rows, scale, zero_point.float(), scheme.qmin, scheme.qmax)
    return from_rows(out, x.shape, scheme).to(x.dtype)


def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """MSE, max |error| and SQNR = 10 log10(mean x^2 / MSE) in dB (inf when exact), computed in float64.

    float64 because squares of float32 values overflow: x near 1e30 would give MSE inf and SQNR nan.
    """
    check_float_tensor(x, "x")  # NaN or Inf would make every metric NaN
    check_float_tensor(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    error = x_hat.double() - x.double()
    mse = error.pow(2).mean().item()
    signal = x.double().pow(2).mean().item()
    sqnr = math.inf if mse == 0 else 10 * math.log10(signal / mse) if signal > 0 else -math.inf
    return {"mse": mse, "max_abs": error.abs().max().item(), "sqnr_db": sqnr}
