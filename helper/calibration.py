"""Choosing the range to quantize: min-max, percentile clipping, MSE search; collecting activations. Taught in 03."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .linear_quant import QuantScheme, choose_qparams, dequantize, quantize, to_rows
from .validation import check_choice, check_float_tensor, check_int_in_range, check_real

__all__ = ["CALIBRATION_METHODS", "calibrate_range", "RangeObserver", "capture_inputs"]

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
MAX_MSE_STEPS = 10_000  # ratios 1/10000 apart are far finer than any grid; more only burns time


def _percentile(rows: torch.Tensor, q: float) -> torch.Tensor:
    # torch.quantile refuses inputs over 16M elements; kthvalue has no such limit.
    k = max(1, min(rows.shape[1], round(q / 100 * rows.shape[1])))
    return rows.kthvalue(k, dim=1, keepdim=True).values


def _mse_search(rows: torch.Tensor, scheme: QuantScheme, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink each row's min-max range by ratios 1/steps .. 1 and keep, per row, the ratio with least MSE."""
    rmin, rmax = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    if scheme.symmetric:
        absmax = torch.maximum(rmin.abs(), rmax.abs())
        rmin, rmax = -absmax, absmax
    best_error = torch.full(rmin.shape, float("inf"), dtype=torch.float64)  # float64: squares of 1e30 overflow float32
    best_min, best_max = rmin.clone(), rmax.clone()
    for ratio in torch.linspace(1 / steps, 1.0, steps).tolist():
        low, high = rmin * ratio, rmax * ratio
        scale, zero_point = choose_qparams(rows, _as_rows_scheme(scheme), clip=(low, high))
        x_hat = dequantize(quantize(rows, scale, zero_point, scheme.qmin, scheme.qmax), scale, zero_point)
        error = (x_hat.double() - rows.double()).pow(2).mean(dim=1, keepdim=True)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_min, best_max = torch.where(better, low, best_min), torch.where(better, high, best_max)
    return best_min, best_max


def _as_rows_scheme(scheme: QuantScheme) -> QuantScheme:
    """The same scheme applied to an already-rowed (rows, n) tensor: one scale per row."""
    return QuantScheme(bits=scheme.bits, symmetric=scheme.symmetric, granularity="per_channel", axis=0,
                       signed=scheme.signed, restricted=scheme.restricted)


def calibrate_range(x: torch.Tensor, scheme: QuantScheme, method: str = "minmax", percentile: float = 99.99,
                    steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (min, max) to quantize x with, each (rows, 1): pass the result as `clip` to quantize_tensor.

    minmax: the extremes (one outlier stretches the grid for everyone). percentile: the (100 - p) and p
    percentiles (outliers get clipped). mse: the shrink of the min-max range with the least squared error.
    """
    check_float_tensor(x, "x")
    check_choice(method, "method", CALIBRATION_METHODS)
    check_real(percentile, "percentile", 50, 100, low_open=True)
    check_int_in_range(steps, "steps", 1, MAX_MSE_STEPS)  # each step quantizes x once: bound the work
    rows = to_rows(x.detach().float(), scheme)
    if method == "minmax":
        return rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    if method == "percentile":
        return _percentile(rows, 100 - percentile), _percentile(rows, percentile)
    return _mse_search(rows, scheme, steps)


class RangeObserver:
    """Running min and max over calibration batches, per tensor (static activation quantization)."""

    def __init__(self) -> None:
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None
        self.batches = 0

    def update(self, x: torch.Tensor) -> None:
        """Widen the range to include this batch."""
        check_float_tensor(x, "batch")
        low, high = x.detach().float().min(), x.detach().float().max()
        self.min = low if self.min is None else torch.minimum(self.min, low)
        self.max = high if self.max is None else torch.maximum(self.max, high)
        self.batches += 1

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, max) seen so far; a clear error before any batch."""
        if self.min is None:
            raise ValueError("the observer has seen no calibration data: call update() with some batches first")
        return self.min.reshape(1, 1), self.max.reshape(1, 1)


@contextmanager
def capture_inputs(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every input that reaches `module` is appended (detached) to the yielded list."""
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach()))
    try:
        yield captured
    finally:
        handle.remove()
