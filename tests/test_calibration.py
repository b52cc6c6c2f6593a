import pytest
import torch

import helper
from helper import QuantScheme


def _with_outlier() -> torch.Tensor:
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    x[0] = 40.0
    return x


def test_minmax_is_stretched_by_one_outlier_and_clipping_fixes_it():
    x = _with_outlier()
    scheme = QuantScheme(bits=8)
    total, bulk = {}, {}
    for method in helper.CALIBRATION_METHODS:
        x_hat = helper.quantize_tensor(x, scheme, helper.calibrate_range(x, scheme, method)).dequantize()
        total[method] = helper.quantization_error(x, x_hat)["mse"]
        bulk[method] = helper.quantization_error(x[1:], x_hat[1:])["mse"]  # all but the outlier
    assert helper.calibrate_range(x, scheme, "minmax")[1].item() == 40.0
    # clipping makes the 9,999 ordinary values far more precise, but the clipped outlier pays for it ...
    assert bulk["percentile"] < bulk["minmax"] / 5 and total["percentile"] > total["minmax"]
    # ... and the MSE search finds the balance: never worse than either
    assert total["mse"] <= min(total["minmax"], total["percentile"]) * 1.01


def test_percentile_bounds():
    x = torch.arange(1, 10_001, dtype=torch.float32)
    low, high = helper.calibrate_range(x, QuantScheme(bits=8, symmetric=False), "percentile", percentile=99.0)
    assert (low.item(), high.item()) == (100.0, 9900.0)


def test_mse_search_never_worse_than_minmax():
    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    scheme = QuantScheme(bits=3, granularity="per_channel")
    minmax = helper.quantize_tensor(x, scheme).dequantize()
    searched = helper.quantize_tensor(x, scheme, helper.calibrate_range(x, scheme, "mse")).dequantize()
    assert ((searched - x) ** 2).mean(1).le(((minmax - x) ** 2).mean(1) + 1e-9).all()


def test_range_observer_and_capture_inputs():
    layer = torch.nn.Linear(4, 2)
    observer = helper.RangeObserver()
    with helper.capture_inputs(layer) as seen:
        for batch in (torch.ones(3, 4), -2 * torch.ones(1, 4)):
            layer(batch)
    for batch in seen:
        observer.update(batch)
    assert len(seen) == 2 and observer.batches == 2
    assert [t.item() for t in observer.range()] == [-2.0, 1.0]
    layer(torch.ones(1, 4))
    assert len(seen) == 2  # the hook is gone after the block


@pytest.mark.parametrize("call, message", [
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "kl"), "method must be one of"),
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "percentile", percentile=20), "percentile must be"),
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "mse", steps=0), "steps must be"),
    (lambda: helper.calibrate_range(torch.tensor([]), QuantScheme()), "empty"),
    (lambda: helper.RangeObserver().range(), "seen no calibration data"),
    (lambda: helper.RangeObserver().update(torch.tensor([float("nan")])), "NaN or Inf"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "mse", steps=10**9),
     r"steps must be an integer in \[1, 10,000\]"),
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "mse", steps=2.5), "steps must be an integer"),
    (lambda: helper.calibrate_range(torch.randn(5), QuantScheme(), "percentile", percentile=float("nan")),
     "percentile must be a finite number"),
    (lambda: helper.calibrate_range(torch.randn(5), "per_tensor"), "scheme must be a QuantScheme"),
    (lambda: helper.RangeObserver().update([1.0]), "batch must be a torch.Tensor"),
], ids=["huge-steps", "float-steps", "nan-percentile", "scheme-string", "list-batch"])
def test_huge_or_odd_arguments_fail_fast(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mse_search_works_for_huge_values():
    """The search compares squared errors in float64: near 1e30 float32 squares overflow to inf for every ratio."""
    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1)) * 1e30
    scheme = QuantScheme(bits=4, granularity="per_channel")
    searched = helper.quantize_tensor(x, scheme, helper.calibrate_range(x, scheme, "mse")).dequantize()
    minmax = helper.quantize_tensor(x, scheme).dequantize()
    searched_error = helper.quantization_error(x, searched)["mse"]
    assert searched_error < helper.quantization_error(x, minmax)["mse"] < float("inf")
