"""Lesson 03's checkers: scale and zero-point, a per-channel quantizer, SQNR."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..linear_quant import QuantScheme, choose_qparams_asymmetric, quantize_tensor
from ..quant_noise import sqnr_full_scale_sine_db, sqnr_full_scale_uniform_db
from .core import Feedback, is_number

__all__ = ["CHECKERS"]


def _scale_zero_point(answer: Any) -> Feedback:
    scale, zero_point = choose_qparams_asymmetric(torch.tensor(-1.0), torch.tensor(3.0), bits=8, signed=False)
    scale, zero_point = scale.item(), int(zero_point.item())
    if not (isinstance(answer, tuple) and len(answer) == 2 and all(is_number(a) for a in answer)):
        return Feedback(False, "give a tuple (scale, zero_point).")
    got_scale, got_zero_point = answer
    scale_ok = math.isclose(got_scale, scale, rel_tol=1e-5)
    if scale_ok and got_zero_point == zero_point:
        return Feedback(True, f"scale = 4 / 255 = {scale:.6f}, zero_point = round(0 - (-1) / scale) = "
                              f"round(63.75) = {zero_point}.")
    if not scale_ok:
        if math.isclose(got_scale, 4 / 256, rel_tol=1e-5):
            return Feedback(False, "scale divides the range by the number of *steps*, 255, not the 256 levels.")
        if math.isclose(got_scale, 3 / 255, rel_tol=1e-5):
            return Feedback(False, "the range is max - min = 3 - (-1) = 4, not 3.")
        return Feedback(False, f"scale {got_scale!r} is off: scale = (rmax - rmin) / (qmax - qmin).")
    if not float(got_zero_point).is_integer():
        return Feedback(False, f"the zero-point must be an integer (you gave {got_zero_point}): round it.")
    if got_zero_point == 63:
        return Feedback(False, "63.75 rounds to 64, not 63 (round to nearest, not down).")
    return Feedback(False, f"scale is right; zero_point {got_zero_point} is not: zero_point = qmin - round(rmin / scale).")


def _per_channel_quantize(answer: Any) -> Feedback:
    if not callable(answer):
        return Feedback(False, "pass your function itself (my_quantize), not its result.")
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(16, 64, generator=generator) * torch.linspace(0.1, 4.0, 16).unsqueeze(1)
    reference = quantize_tensor(weight, QuantScheme(bits=4, granularity="per_channel", axis=0))
    try:
        result = answer(weight, 4)
    except Exception as error:  # a learner's function may fail in any way; say how
        return Feedback(False, f"your function raised {type(error).__name__}: {error}")
    if result is None:
        return Feedback(False, "your function returned None: end it with `return codes, scale`.")
    if not (isinstance(result, tuple) and len(result) == 2):
        return Feedback(False, "return a tuple (codes, scale).")
    codes, scale = result
    codes, scale = torch.as_tensor(codes), torch.as_tensor(scale, dtype=torch.float32)
    if scale.numel() == 1:
        return Feedback(False, "you returned one scale: per-channel means one scale per output row (16 here).")
    if scale.numel() != 16:
        return Feedback(False, f"expected 16 scales (one per row), got {scale.numel()}: reduce over dim=1.")
    if not torch.allclose(scale.reshape(16, 1), reference.scale, rtol=1e-5):
        return Feedback(False, "the scales differ: scale = max|row| / 7 for symmetric int4.")
    if codes.shape != weight.shape:
        return Feedback(False, f"codes should have the weight's shape {tuple(weight.shape)}, got {tuple(codes.shape)}.")
    if codes.min() < -8 or codes.max() > 7:
        return Feedback(False, "some codes are outside -8..7: clamp after rounding.")
    if not torch.equal(codes.to(torch.int32), reference.codes().to(torch.int32)):
        wrong = (codes.to(torch.int32) != reference.codes().to(torch.int32)).sum().item()
        return Feedback(False, f"{wrong} codes differ: use torch.round(w / scale) (ties to even), then clamp.")
    return Feedback(True, "same codes and scales as helper.quantize_tensor with a per_channel scheme.")


def _sqnr_8bit(answer: Any) -> Feedback:
    expected = sqnr_full_scale_sine_db(8)
    if not is_number(answer):
        return Feedback(False, "give the SQNR in dB as a number.")
    if abs(answer - expected) < 0.05:
        return Feedback(True, f"6.02 x 8 + 1.76 = {expected:.2f} dB: each extra bit buys 6.02 dB.")
    if abs(answer - sqnr_full_scale_uniform_db(8)) < 0.05:
        return Feedback(False, "that is a full-scale *uniform* signal; a sine has 1.5 x its power relative to the "
                               "noise (+1.76 dB).")
    if abs(answer - 8 * 6.02) > 20:
        return Feedback(False, f"{answer} dB is far off: SQNR grows by about 6 dB per bit.")
    return Feedback(False, f"{answer} dB is not it: use 6.02 b + 1.76.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "03.scale_zero_point": _scale_zero_point,
    "03.per_channel_quantize": _per_channel_quantize,
    "03.sqnr_8bit_sine": _sqnr_8bit,
}
