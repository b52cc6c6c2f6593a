"""Lesson 03's checkers: scale and zero-point, a per-channel quantizer, SQNR, a fixed-point multiplier.

A number is right when it is the exact answer rounded to the precision the learner typed (at least
three significant digits): 0.015686 and 0.0157 are 4/255; 0.015685 is a rounding slip, not a wrong formula.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..integer_matmul import quantize_multiplier
from ..linear_quant import QuantScheme, quantize_tensor
from ..quant_noise import sqnr_full_scale_sine_db, sqnr_full_scale_uniform_db
from .core import Feedback, as_tensor, call_learner, is_number

__all__ = ["CHECKERS"]

_MIN_SIGNIFICANT = 3


def _decimals_typed(value: float) -> int:
    """How many decimals the number was written with: 0.015686 -> 6, 64.0 -> 0, 1.5e-05 -> 6."""
    text = repr(float(value))
    if float(np.float32(value)) == value:  # a float32 (a tensor's .item()): read it as float32 printed it
        text = repr(float(str(np.float32(value))))
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.partition(".")[2].rstrip("0")
    return max(0, len(digits) - int(exponent or 0))


def _rounding_verdict(got: float, exact: float) -> str:
    """'right' (exact rounded to got's decimals), 'too coarse' (right but < 3 significant digits),
    'rounding' (one off in the last digit typed: truncated or mis-rounded) or 'wrong'."""
    if not math.isfinite(got):
        return "wrong"
    step = 10.0 ** -_decimals_typed(got)
    distance = abs(got - exact)
    if distance <= 0.5 * step * (1 + 1e-9) or math.isclose(got, exact, rel_tol=1e-6):
        significant = _decimals_typed(got) + math.floor(math.log10(abs(got))) + 1 if got else 0
        return "right" if significant >= _MIN_SIGNIFICANT or got == exact else "too coarse"
    return "rounding" if distance <= 1.5 * step and got != 0 else "wrong"


def _pair(answer: Any) -> tuple[Any, Any] | None:
    if isinstance(answer, (tuple, list)) and len(answer) == 2 and all(is_number(a) for a in answer):
        return answer[0], answer[1]
    return None


# --- Exercise 1 ---------------------------------------------------------------------------------------------

def _scale_zero_point(answer: Any) -> Feedback:
    scale, zero_point = 4 / 255, 64  # the range [-1, 3] onto 0..255: choose_qparams_asymmetric gives the same
    pair = _pair(answer)
    if pair is None:
        return Feedback(False, "give two numbers, (scale, zero_point), e.g. (0.01, 10).")
    got_scale, got_zero_point = pair
    verdict = _rounding_verdict(got_scale, scale)
    if verdict == "right" and got_zero_point == zero_point:
        return Feedback(True, f"scale = 4 / 255 = {scale:.6f}, zero_point = 0 - round(-1 / scale) = "
                              f"round(63.75) = {zero_point}.")
    if verdict == "too coarse":
        return Feedback(False, f"scale {got_scale} is 4/255 = {scale:.6f} rounded too far: give at least "
                               f"{_MIN_SIGNIFICANT} significant digits (0.0157).")
    if verdict == "rounding":
        return Feedback(False, f"the formula is right but the rounding is not: 4/255 = {scale:.10f}..., which "
                               f"to {_decimals_typed(got_scale)} decimals is {round(scale, _decimals_typed(got_scale))} "
                               f"(you gave {got_scale}).")
    if verdict == "wrong":
        for wrong, why in ((4 / 256, "scale divides the range by the number of *steps*, 255, not the 256 levels."),
                           (3 / 255, "the range is max - min = 3 - (-1) = 4, not 3."),
                           (255 / 4, "that is 1 / scale: scale is the step between levels, (rmax - rmin) / "
                                     "(qmax - qmin) = 4 / 255."),
                           (1 / 255, "the range is rmax - rmin = 4, not 1.")):
            if _rounding_verdict(got_scale, wrong) in ("right", "too coarse"):
                return Feedback(False, why)
        return Feedback(False, f"scale {got_scale} is off: scale = (rmax - rmin) / (qmax - qmin).")
    # the scale is right: what is wrong with the zero-point?
    if not float(got_zero_point).is_integer():
        if math.isclose(got_zero_point, 63.75, abs_tol=0.01):
            return Feedback(False, "the zero-point must be an integer (you gave 63.75): round it.")
        return Feedback(False, f"the zero-point must be an integer (you gave {got_zero_point}).")
    if got_zero_point == 63:
        return Feedback(False, "scale is right; 63.75 rounds to 64, not 63 (round to nearest, not down).")
    if got_zero_point == -64:
        return Feedback(False, "scale is right; the sign of the zero-point is off: zero_point = qmin - round(rmin / "
                               "scale) = 0 - round(-63.75) = +64.")
    return Feedback(False, f"scale is right; zero_point {got_zero_point:g} is not: zero_point = qmin - "
                           "round(rmin / scale).")


# --- Exercise 2 ---------------------------------------------------------------------------------------------

def _hidden_weights() -> list[tuple[int, torch.Tensor]]:
    """(bits, weight) cases: rows of very different sizes, some whose largest magnitude is negative."""
    generator = torch.Generator().manual_seed(3)
    cases = []
    for bits, rows, columns in ((4, 16, 64), (8, 8, 48), (3, 6, 20)):
        weight = torch.randn(rows, columns, generator=generator) * torch.linspace(0.1, 4.0, rows).unsqueeze(1)
        weight[0, 0] = -2 * weight[0].abs().max()  # row 0's extreme is negative: max|w|, not max(w)
        cases.append((bits, weight))
    return cases


def _read_array(value: Any, what: str) -> tuple[torch.Tensor | None, str]:
    """(float64 tensor, '') or (None, what is wrong with value), for a learner's returned codes or scales."""
    if isinstance(value, str):
        return None, f"{what} is a string ({value[:30]!r}); return a tensor."
    if isinstance(value, torch.Tensor) and value.is_complex():
        return None, f"{what} is a complex tensor ({value.dtype}); return real numbers."
    tensor = as_tensor(value)
    if tensor is None:
        return None, (f"{what} could not be read as an array of finite numbers (a ragged list, strings, NaN or "
                      f"inf?); return a tensor.")
    return tensor, ""


def _per_channel_quantize(answer: Any) -> Feedback:
    if not callable(answer):
        return call_learner(answer, "my_quantize")[1]
    for bits, weight in _hidden_weights():
        rows = weight.shape[0]
        q_max = 2 ** (bits - 1) - 1
        reference = quantize_tensor(weight, QuantScheme(bits=bits, granularity="per_channel", axis=0))
        case = f"on a {rows}x{weight.shape[1]} weight with bits={bits}"
        result, problem = call_learner(answer, "my_quantize", weight.clone(), bits, case=case, returns="codes, scale")
        if problem is not None:
            return problem
        if isinstance(result, torch.Tensor):
            return Feedback(False, "your function returned one tensor: return two things, `return codes, scale`.")
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            return Feedback(False, f"return a tuple (codes, scale); got {type(result).__name__}.")
        codes, message = _read_array(result[0], "codes")
        if codes is None:
            return Feedback(False, f"{case}: {message}")
        scale, message = _read_array(result[1], "scale")
        if scale is None:
            return Feedback(False, f"{case}: {message}")
        row_absmax = weight.abs().amax(dim=1).double()
        if scale.numel() == 1:
            return Feedback(False, f"you returned one scale: per-channel means one scale per output row ({rows} here).")
        if scale.numel() != rows:
            return Feedback(False, f"{case}: expected {rows} scales (one per row), got {scale.numel()}: reduce "
                                   "over dim=1.")
        scale = scale.reshape(rows)
        if not torch.allclose(scale, reference.scale.double().reshape(rows), rtol=1e-5):
            if bits != 4 and torch.allclose(scale, row_absmax / 7, rtol=1e-5):
                return Feedback(False, f"{case} your scales are max|row| / 7, the int4 value: use "
                                       f"q_max = 2 ** (bits - 1) - 1 (= {q_max} here), not a fixed 7.")
            if torch.allclose(scale, row_absmax / 2 ** (bits - 1), rtol=1e-5):
                return Feedback(False, f"{case} your scales are max|row| / 2^(bits-1): divide by q_max = "
                                       f"2^(bits-1) - 1 = {q_max}, so the largest weight lands on code {q_max}.")
            if torch.allclose(scale, weight.amax(dim=1).double() / q_max, rtol=1e-5):
                return Feedback(False, f"{case} your scales use max(row), not max(|row|): a row whose extreme "
                                       "is negative gets too small a scale.")
            return Feedback(False, f"{case} the scales differ: scale = max|row| / (2^(bits-1) - 1).")
        if codes.shape != weight.shape:
            return Feedback(False, f"{case}: codes should have the weight's shape {tuple(weight.shape)}, got "
                                   f"{tuple(codes.shape)}.")
        expected = reference.codes().double()
        if torch.allclose(codes, reference.dequantize().double(), rtol=1e-5, atol=1e-7) or \
                torch.allclose(codes, weight.double(), rtol=1e-5):
            return Feedback(False, f"{case} you returned dequantized weights (codes x scale, back in the weight's "
                                   "units): return the integer codes themselves, before multiplying by the scale.")
        if not torch.equal(codes, codes.round()):
            return Feedback(False, f"{case} the codes are not integers: round w / scale to the nearest integer.")
        if codes.min() < -q_max - 1 or codes.max() > q_max:
            return Feedback(False, f"{case} some codes are outside {-q_max - 1}..{q_max}: clamp after rounding.")
        if not torch.equal(codes, expected):
            wrong = int((codes != expected).sum())
            return Feedback(False, f"{case} {wrong} of {codes.numel()} codes differ: use torch.round(w / scale) "
                                   "(ties to even), then clamp.")
    return Feedback(True, "same codes and scales as helper.quantize_tensor with a per_channel scheme, at 4, 8 and "
                          "3 bits.")


# --- Exercise 3 ---------------------------------------------------------------------------------------------

def _sqnr_8bit(answer: Any) -> Feedback:
    expected = sqnr_full_scale_sine_db(8)  # 49.93 dB (49.92 with the rounded constants 6.02 and 1.76)
    if not is_number(answer):
        return Feedback(False, "give the SQNR in dB as a number.")
    verdicts = {_rounding_verdict(answer, value) for value in (expected, 6.02 * 8 + 1.76)}
    if "right" in verdicts:
        return Feedback(True, f"6.02 x 8 + 1.76 = {expected:.2f} dB: each extra bit buys 6.02 dB.")
    if "too coarse" in verdicts:
        return Feedback(True, f"to the nearest dB; more exactly 6.02 x 8 + 1.76 = {expected:.2f} dB.")
    if "rounding" in verdicts:
        return Feedback(False, f"the formula is right, the rounding is not: 6.02 x 8 + 1.76 = {expected:.4f}... dB.")
    if abs(answer - sqnr_full_scale_uniform_db(8)) < 0.06:
        return Feedback(False, "that is a full-scale *uniform* signal; a sine has 1.5 x its power relative to the "
                               "noise (+1.76 dB).")
    if abs(answer - (6 * 8 + 1.76)) < 0.01:
        return Feedback(False, "6 dB per bit is the rounded rule; use 6.02 dB per bit (20 log10 2).")
    if abs(answer - 8 * 6.02) > 20:
        return Feedback(False, f"{answer} dB is far off: SQNR grows by about 6 dB per bit.")
    return Feedback(False, f"{answer} dB is not it: use 6.02 b + 1.76.")


# --- Exercise 4 ---------------------------------------------------------------------------------------------

FIXED_POINT_SCALES = {"x_scale": 0.05, "w_scale": 0.004, "y_scale": 0.12}


def _fixed_point_multiplier(answer: Any) -> Feedback:
    multiplier = FIXED_POINT_SCALES["x_scale"] * FIXED_POINT_SCALES["w_scale"] / FIXED_POINT_SCALES["y_scale"]
    q31, right_shift = quantize_multiplier(multiplier)
    mantissa = math.frexp(multiplier)[0]  # 0.8533...
    pair = _pair(answer)
    if pair is None:
        return Feedback(False, "give two integers, (M0, right_shift), e.g. (1500000000, 7).")
    got_q31, got_shift = pair
    if not float(got_shift).is_integer():
        return Feedback(False, f"right_shift must be a whole number of bits, got {got_shift}.")
    got_shift = int(got_shift)
    if got_shift == -right_shift:
        return Feedback(False, f"right_shift counts shifts to the *right*: M = M0 x 2^-{right_shift}, so "
                               f"right_shift = {right_shift}, a positive number.")
    if 0.5 <= got_q31 < 1:
        return Feedback(False, f"{got_q31} is M0 as a real number; store it as a Q31 int32: round(M0 x 2^31).")
    if got_shift == right_shift:
        if got_q31 == q31:
            return Feedback(True, f"M = {multiplier:.7f} = {mantissa:.6f} x 2^-{right_shift}; M0 = round({mantissa:.6f} "
                                  f"x 2^31) = {q31}. Requantizing an accumulator is now (acc x M0) >> (31 + "
                                  f"{right_shift}), with rounding.")
        if got_q31 == math.floor(mantissa * 2**31):
            return Feedback(False, f"the shift is right; M0 x 2^31 = {mantissa * 2**31:.2f} rounds to {q31} (you truncated "
                                   f"to {got_q31}).")
        if abs(got_q31 - q31) < 2**29:
            return Feedback(False, f"the shift is right; M0 is {got_q31 - q31:+,.0f} off: round({mantissa!r} x 2^31) = "
                                   f"{q31} (keep every digit: M0 is an integer, not a rounded decimal).")
        return Feedback(False, f"the shift is right, M0 is not: your M0 x 2^-31 x 2^-{right_shift} = "
                               f"{got_q31 * 2.0 ** (-31 - right_shift):.4g}, but M = {multiplier:.4g}.")
    represented = got_q31 * 2.0 ** (-31 - got_shift)
    if math.isclose(represented, multiplier, rel_tol=1e-6):
        m0 = got_q31 / 2**31
        return Feedback(False, f"your pair does represent M, but M0 = {m0:.4g} is not in [0.5, 1): normalise it "
                               f"(each extra shift doubles M0) so it uses all 31 bits of precision; the shift is "
                               f"then {right_shift}.")
    return Feedback(False, f"your M0 x 2^-31 x 2^-right_shift = {represented:.4g}, but M = S_x S_w / S_y = "
                           f"{multiplier:.4g}: write M = M0 x 2^-n with M0 in [0.5, 1) (math.frexp does it).")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "03.scale_zero_point": _scale_zero_point,
    "03.per_channel_quantize": _per_channel_quantize,
    "03.sqnr_8bit_sine": _sqnr_8bit,
    "03.fixed_point_multiplier": _fixed_point_multiplier,
}
