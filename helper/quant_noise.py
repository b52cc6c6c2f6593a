"""The theory of quantization error: uniform noise, SQNR, and the best grids for Gaussian data. Taught in 03.

Reference values for a unit Gaussian with 16 levels (computed here, and checked in tests):
best uniform mid-rise grid 0.01154, int4 grid -8..7 at its best step 0.01186, restricted -7..7 0.01289,
Lloyd-Max (the best non-uniform quantizer) 0.009501, Lloyd's algorithm run to convergence. Max's 1960
table prints 0.009497: the table is slightly off, not rounded (its own 4-digit levels give 0.009501).
"""

from __future__ import annotations

import math

import torch

from .validation import InputTypeError, check_int_in_range, check_positive, check_real

__all__ = ["uniform_noise_power", "sqnr_full_scale_uniform_db", "sqnr_full_scale_sine_db", "gaussian_mse", "best_step_gaussian_mse",
           "lloyd_max_gaussian"]

_SQRT2 = math.sqrt(2.0)
_MAX_BITS = 1024  # far past any real grid; beyond it 2**bits is a number too large to be worth computing
_MAX_LEVELS = 4096  # 12 bits of levels: Lloyd's algorithm stays quick


def uniform_noise_power(scale: float) -> float:
    """Rounding error of a fine grid with step scale is uniform on [-scale/2, scale/2]: variance scale^2 / 12."""
    scale = check_positive(scale, "scale")
    return scale**2 / 12


def sqnr_full_scale_uniform_db(bits: int) -> float:
    """SQNR of a b-bit grid on a full-scale uniform signal: 20 log10(2^b) = 6.02 b dB.

    The textbook 6.02 b + 1.76 dB is for a full-scale *sine*; a uniform signal over the full range has
    power (range^2)/12, exactly the noise power times 2^(2b), so 6.02 b with no constant.
    """
    bits = check_int_in_range(bits, "bits", 1, _MAX_BITS)  # 2**bits of a huge bits would never finish
    return 20 * math.log10(2**bits)


def sqnr_full_scale_sine_db(bits: int) -> float:
    """SQNR of a b-bit grid on a full-scale sine: 10 log10(1.5 x 4^b) = 6.02 b + 1.76 dB (the textbook rule)."""
    return sqnr_full_scale_uniform_db(bits) + 10 * math.log10(1.5)


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / _SQRT2))


def _as_levels(levels: object, name: str) -> torch.Tensor:
    """A flat float64 tensor of 1.._MAX_LEVELS finite values, from a tensor, an array or a list."""
    try:
        levels = torch.as_tensor(levels, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise InputTypeError(f"{name} must be a tensor or list of numbers, got {type(levels).__name__}") from None
    if not 1 <= levels.numel() <= _MAX_LEVELS:
        raise ValueError(f"{name} must hold 1 to {_MAX_LEVELS:,} values, got {levels.numel():,}")
    if not torch.isfinite(levels).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return levels


def gaussian_mse(levels: torch.Tensor) -> float:
    """E[(X - Q(X))^2] for X ~ N(0, 1) and Q = nearest of the given levels, computed exactly (no sampling)."""
    levels = torch.sort(_as_levels(levels, "levels")).values
    edges = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), (levels[1:] + levels[:-1]) / 2,
                       torch.tensor([math.inf], dtype=torch.float64)])
    a, b = edges[:-1], edges[1:]
    # Over a cell [a, b]: integral of (x - c)^2 phi = M2 - 2c M1 + c^2 M0, with Gaussian partial moments
    # M0 = Phi(b) - Phi(a), M1 = phi(a) - phi(b), M2 = M0 + a phi(a) - b phi(b) (a phi(a) -> 0 at infinity).
    m0 = _cdf(b) - _cdf(a)
    m1 = _phi(a) - _phi(b)
    a_phi = torch.where(torch.isinf(a), torch.zeros_like(a), a * _phi(a))
    b_phi = torch.where(torch.isinf(b), torch.zeros_like(b), b * _phi(b))
    m2 = m0 + a_phi - b_phi
    return float((m2 - 2 * levels * m1 + levels**2 * m0).sum())


def best_step_gaussian_mse(codes: torch.Tensor, low: float = 1e-3, high: float = 2.0) -> tuple[float, float]:
    """(step, mse): the step that minimises gaussian_mse(step * codes), by golden-section search."""
    codes = _as_levels(codes, "codes")
    low = check_positive(low, "low")
    high = check_real(high, "high", low=low, low_open=True)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):  # the MSE is unimodal in the step for these grids
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if gaussian_mse(left * codes) < gaussian_mse(right * codes):
            high = right
        else:
            low = left
    step = (low + high) / 2
    return step, gaussian_mse(step * codes)


def lloyd_max_gaussian(n_levels: int, tolerance: float = 1e-12, max_iterations: int = 100_000) -> tuple[torch.Tensor, float]:
    """(levels, mse) of the MSE-optimal n-level quantizer for N(0, 1), by Lloyd's algorithm.

    Alternates: each level is the mean of its cell (centroid), each edge the midpoint of two levels.
    """
    n_levels = check_int_in_range(n_levels, "n_levels", 2, _MAX_LEVELS)
    tolerance = check_positive(tolerance, "tolerance")
    max_iterations = check_int_in_range(max_iterations, "max_iterations", 1, 1_000_000)
    levels = torch.linspace(-2.5, 2.5, n_levels, dtype=torch.float64)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    for _ in range(max_iterations):  # Lloyd converges slowly but surely; stop when levels stop moving
        edges = torch.cat([-inf, (levels[1:] + levels[:-1]) / 2, inf])
        a, b = edges[:-1], edges[1:]
        updated = (_phi(a) - _phi(b)) / (_cdf(b) - _cdf(a))  # E[X | a < X < b]
        if (updated - levels).abs().max() < tolerance:
            levels = updated
            break
        levels = updated
    return levels, gaussian_mse(levels)
