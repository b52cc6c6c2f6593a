import math

import pytest
import torch

import helper


def test_uniform_noise_power_matches_measurement():
    x = torch.rand(1_000_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    quantized = helper.quantize_tensor(x, helper.QuantScheme(bits=8, symmetric=False))
    measured = helper.quantization_error(x, quantized.dequantize())["mse"]
    assert measured == pytest.approx(helper.uniform_noise_power(quantized.scale.item()), rel=0.01)


def test_sqnr_rules():
    assert helper.sqnr_full_scale_uniform_db(8) == pytest.approx(6.0206 * 8, abs=1e-3)
    assert helper.sqnr_full_scale_sine_db(8) == pytest.approx(6.02 * 8 + 1.76, abs=0.01)


def _measured_sine_sqnr(bits: int) -> float:
    # a full-scale sine quantized with 2^b levels spread over exactly its range: step = 2A / 2^b (mid-rise)
    phases = torch.rand(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    signal = torch.sin(2 * math.pi * phases)  # random phases: a whole number of periods would repeat samples
    step = 2 / 2**bits
    quantized = (torch.floor(signal / step).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) + 0.5) * step
    return 10 * math.log10(signal.pow(2).mean().item() / (quantized - signal).pow(2).mean().item())


def test_sine_sqnr_rule_is_an_approximation_that_tightens_with_bits():
    # The rule assumes the error is uniform in every cell; a sine lingers near its peaks, where it is not.
    gaps = {bits: helper.sqnr_full_scale_sine_db(bits) - _measured_sine_sqnr(bits) for bits in (4, 8, 12)}
    assert 0 < gaps[12] < gaps[8] < gaps[4] < 0.6
    assert gaps[8] < 0.2 and gaps[12] < 0.05


def test_gaussian_mse_exact_cases():
    assert helper.gaussian_mse(torch.tensor([0.0])) == pytest.approx(1.0)
    # two levels ±sqrt(2/pi) are optimal for 1 bit: MSE 1 - 2/pi
    assert helper.gaussian_mse(torch.tensor([-1.0, 1.0]) * math.sqrt(2 / math.pi)) == pytest.approx(1 - 2 / math.pi)


def test_gaussian_mse_matches_sampling():
    levels = torch.arange(-8, 8) * 0.34
    x = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    nearest = levels.double()[torch.bucketize(x, (levels[1:] + levels[:-1]).double() / 2)]
    assert (x - nearest).pow(2).mean().item() == pytest.approx(helper.gaussian_mse(levels), rel=0.01)


@pytest.mark.parametrize("codes, expected", [
    (torch.arange(-8, 8) + 0.5, 0.01154),  # best uniform 16-level grid (mid-rise)
    (torch.arange(-8, 8), 0.01186),  # int4 -8..7
    (torch.arange(-7, 8), 0.01289),  # restricted -7..7
], ids=["mid-rise", "int4", "restricted"])
def test_published_best_uniform_gaussian_mse(codes, expected):
    _, mse = helper.best_step_gaussian_mse(codes)
    assert mse == pytest.approx(expected, abs=5e-6)


def test_lloyd_max_16_levels():
    levels, mse = helper.lloyd_max_gaussian(16)
    # Max (1960) table: outputs ±0.1284 ... ±2.733 and "error 0.009497". The converged optimum is 0.009501, and
    # Max's own levels, evaluated exactly, give 0.009501 too: the table's error figure is slightly off, not rounded.
    max_levels = torch.tensor([0.1284, 0.3881, 0.6568, 0.9424, 1.256, 1.618, 2.069, 2.733], dtype=torch.float64)
    assert torch.allclose(levels[8:], max_levels, atol=6e-4)
    assert mse == pytest.approx(0.009501, abs=5e-7)
    max_mse = helper.gaussian_mse(torch.cat([-max_levels, max_levels]))
    assert mse <= max_mse == pytest.approx(0.009501, abs=5e-7)  # nothing beats the converged levels
    assert abs(max_mse - 0.009497) > 3e-6  # 0.009497 is not the table's levels rounded
    assert mse < helper.best_step_gaussian_mse(torch.arange(-8, 8) + 0.5)[1]


def test_mse_calibrated_int4_reaches_the_theoretical_best():
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
    scheme = helper.QuantScheme(bits=4)
    clip = helper.calibrate_range(x, scheme, "mse", steps=400)
    mse = helper.quantization_error(x, helper.quantize_tensor(x, scheme, clip).dequantize())["mse"]
    assert mse == pytest.approx(0.01186, rel=0.01)
    assert mse > helper.lloyd_max_gaussian(16)[1]


@pytest.mark.parametrize("call, message", [
    (lambda: helper.uniform_noise_power(0), "scale must be > 0"),
    (lambda: helper.sqnr_full_scale_uniform_db(0), r"bits must be an integer in \[1, 1,024\]"),
    (lambda: helper.lloyd_max_gaussian(1), r"n_levels must be an integer in \[2, 4,096\]"),
    (lambda: helper.gaussian_mse(torch.tensor([])), "levels must hold 1 to 4,096 values"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: helper.sqnr_full_scale_uniform_db(10**12), r"bits must be an integer in \[1, 1,024\], got 1,000,000,000,000"),
    (lambda: helper.sqnr_full_scale_sine_db(2.5), "bits must be an integer"),
    (lambda: helper.lloyd_max_gaussian(10**9), r"n_levels must be an integer in \[2, 4,096\]"),
    (lambda: helper.lloyd_max_gaussian(16, tolerance=float("nan")), "tolerance must be a finite number"),
    (lambda: helper.lloyd_max_gaussian(16, max_iterations=10**12), "max_iterations must be an integer"),
    (lambda: helper.uniform_noise_power(float("nan")), "scale must be a finite number"),
    (lambda: helper.uniform_noise_power("0.1"), "scale must be a number"),
    (lambda: helper.gaussian_mse(torch.tensor([0.0, float("nan")])), "levels contains NaN or Inf"),
    (lambda: helper.gaussian_mse(["a", "b"]), "levels must be a tensor or list of numbers"),
    (lambda: helper.gaussian_mse(torch.zeros(5000)), "levels must hold 1 to 4,096 values, got 5,000"),
    (lambda: helper.best_step_gaussian_mse(torch.tensor([float("inf")])), "codes contains NaN or Inf"),
    (lambda: helper.best_step_gaussian_mse(torch.arange(-8.0, 8.0), low=0), "low must be > 0"),
    (lambda: helper.best_step_gaussian_mse(torch.arange(-8.0, 8.0), low=1.0, high=0.5), "high must be > 1.0"),
], ids=["huge-bits", "float-bits", "huge-levels", "nan-tolerance", "huge-iterations", "nan-scale", "string-scale",
        "nan-levels", "string-levels", "too-many-levels", "inf-codes", "low-zero", "high-below-low"])
def test_huge_and_non_finite_arguments_fail_fast(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_levels_beyond_float64_are_refused():
    with pytest.raises(ValueError, match="levels must be a tensor or list of numbers"):
        helper.gaussian_mse(10**400)
