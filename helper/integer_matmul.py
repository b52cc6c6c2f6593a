"""The integer arithmetic of a quantized matmul: int8 x int8 -> int32, zero-point terms, requantization. Taught in 03.

Integer-only inference (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"; gemmlowp and TFLite do it this way). With x = S_x (q_x - Z_x),
w = S_w (q_w - Z_w) and y = S_y (q_y - Z_y):

    y[t, o] = S_x S_w * acc[t, o],    acc[t, o] = sum_k (q_x[t, k] - Z_x) (q_w[o, k] - Z_w)   (int32)
    q_y = Z_y + round(M * acc),       M = S_x S_w / S_y = M0 * 2^-right_shift, M0 in [0.5, 1)

M0 is stored as a Q31 int32, round(M0 * 2^31), so requantizing is an integer multiply and a rounding
right shift. Worked example: M = 0.05 * 0.004 / 0.12 = 0.0016667 = 0.85333 * 2^-9 -> (M0 = 1832519380, right_shift = 9).
The multiply rounds twice (to 2^-31, then to an integer), so a result can be 1 off exact rounding.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["INT32_MIN", "INT32_MAX", "quantize_multiplier", "saturating_rounding_doubling_high_mul",
           "rounding_divide_by_power_of_two", "multiply_by_quantized_multiplier", "zero_point_terms",
           "int8_matmul_int32", "requantize", "quantized_linear", "pytorch_quantized_linear"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_CODE_RANGES = {torch.int8: (-128, 127), torch.uint8: (0, 255)}


def _check_codes(q: torch.Tensor, name: str) -> None:
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of int8 or uint8 codes, got {type(q).__name__}")
    if q.dtype not in _CODE_RANGES:
        raise TypeError(f"{name} must hold int8 or uint8 codes, got {q.dtype}")
    if q.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(q.shape)}")


def _check_zero_point(zero_point: int, dtype: torch.dtype, name: str) -> int:
    if isinstance(zero_point, bool) or not isinstance(zero_point, int):
        raise TypeError(f"{name} must be an int, got {type(zero_point).__name__}")
    low, high = _CODE_RANGES[dtype]
    if not low <= zero_point <= high:
        raise ValueError(f"{name} {zero_point} is outside the {dtype} range {low}..{high}")
    return zero_point


def _check_int32(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers (int32 accumulators), got {x.dtype}")
    x = x.to(torch.int64)
    if x.numel() and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise ValueError(f"{name} has values outside int32: an int32 accumulator cannot hold them")
    return x


def quantize_multiplier(multiplier: float) -> tuple[int, int]:
    """(M0, right_shift) with multiplier = M0 * 2^-31 * 2^-right_shift, M0 in [2^30, 2^31): a Q31 int32.

    0.0016667 = 0.85333 * 2^-9 -> (round(0.85333 * 2^31), 9) = (1832519380, 9). A multiplier >= 1 gets a
    negative right_shift (a left shift).
    """
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)):
        raise TypeError(f"multiplier must be a float, got {type(multiplier).__name__}")
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"multiplier must be a finite number > 0, got {multiplier}")
    mantissa, exponent = math.frexp(multiplier)  # multiplier = mantissa * 2^exponent, mantissa in [0.5, 1)
    q31 = round(mantissa * 2**31)
    if q31 == 2**31:  # the mantissa rounded up to 1.0: renormalise to 0.5
        q31, exponent = 2**30, exponent + 1
    right_shift = -exponent
    if not -31 <= right_shift <= 62:
        raise ValueError(f"multiplier {multiplier} is too far from 1 to requantize with a shift of at most 62 bits")
    return q31, right_shift


def saturating_rounding_doubling_high_mul(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """round(a * b / 2^31) for int32 a, b (ties away from zero), as gemmlowp's SaturatingRoundingDoublingHighMul.

    The one overflow, a = b = -2^31, saturates to 2^31 - 1.
    """
    a = _check_int32(a, "a")
    b = _check_int32(torch.as_tensor(b), "b")
    product = a * b  # exact in int64: |a b| <= 2^62
    nudge = torch.where(product >= 0, torch.tensor(2**30), torch.tensor(1 - 2**30))
    high = torch.div(product + nudge, 2**31, rounding_mode="trunc")  # C++ division truncates toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return torch.where(overflow, torch.tensor(INT32_MAX), high).to(torch.int32)


def rounding_divide_by_power_of_two(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """round(x / 2^exponent), ties away from zero, with shifts and masks only (gemmlowp's RoundingDivideByPOT)."""
    x = _check_int32(x, "x")
    if isinstance(exponent, bool) or not isinstance(exponent, int) or not 0 <= exponent <= 31:
        raise ValueError(f"exponent must be an int in 0..31, got {exponent!r}")
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return ((x >> exponent) + (remainder > threshold).to(torch.int64)).to(torch.int32)


def multiply_by_quantized_multiplier(acc: torch.Tensor, q31: int, right_shift: int) -> torch.Tensor:
    """round(acc * q31 * 2^-31 * 2^-right_shift) in integers only: a Q31 multiply, then a rounding right shift."""
    acc = _check_int32(acc, "acc")
    if isinstance(q31, bool) or not isinstance(q31, int) or not 2**30 <= q31 < 2**31:
        raise ValueError(f"q31 must be an int in [2^30, 2^31) (M0 in [0.5, 1) as Q31), got {q31!r}")
    if isinstance(right_shift, bool) or not isinstance(right_shift, int):
        raise TypeError(f"right_shift must be an int, got {type(right_shift).__name__}")
    left_shift = max(-right_shift, 0)
    if left_shift:
        shifted = acc << left_shift
        if shifted.numel() and (shifted.min() < INT32_MIN or shifted.max() > INT32_MAX):
            raise ValueError(f"acc << {left_shift} overflows int32: the multiplier is too large for these values")
        acc = shifted
    high = saturating_rounding_doubling_high_mul(acc, q31)
    if right_shift <= 31:
        return rounding_divide_by_power_of_two(high, max(right_shift, 0))
    return rounding_divide_by_power_of_two(rounding_divide_by_power_of_two(high, 31), right_shift - 31)


def zero_point_terms(q_x: torch.Tensor, q_w: torch.Tensor, x_zero_point: int = 0,
                     w_zero_point: int = 0) -> dict[str, torch.Tensor]:
    """The four terms of sum_k (q_x - Z_x)(q_w - Z_w), int64, each (tokens, out) or broadcastable to it.

    "q_x q_w": the int8 matmul; "Z_w rowsum(q_x)": one sum per token, recomputed for every input;
    "Z_x colsum(q_w)": one sum per output channel, precomputed once from the weights; "K Z_x Z_w": a constant.
    acc = q_x q_w - Z_w rowsum(q_x) - Z_x colsum(q_w) + K Z_x Z_w.
    """
    _check_codes(q_x, "q_x")
    _check_codes(q_w, "q_w")
    if q_x.shape[1] != q_w.shape[1]:
        raise ValueError(f"q_x has {q_x.shape[1]} input features but q_w has {q_w.shape[1]} (q_w is (out, in))")
    x_zero_point = _check_zero_point(x_zero_point, q_x.dtype, "x_zero_point")
    w_zero_point = _check_zero_point(w_zero_point, q_w.dtype, "w_zero_point")
    x, w = q_x.to(torch.int64), q_w.to(torch.int64)
    k = x.shape[1]
    return {
        "q_x q_w": x @ w.T,  # (tokens, out)
        "Z_w rowsum(q_x)": w_zero_point * x.sum(dim=1, keepdim=True),  # (tokens, 1)
        "Z_x colsum(q_w)": x_zero_point * w.sum(dim=1).unsqueeze(0),  # (1, out)
        "K Z_x Z_w": torch.tensor(k * x_zero_point * w_zero_point),  # ()
    }


def int8_matmul_int32(q_x: torch.Tensor, q_w: torch.Tensor, x_zero_point: int = 0,
                      w_zero_point: int = 0) -> torch.Tensor:
    """acc = sum_k (q_x - Z_x)(q_w - Z_w) as int32, (tokens, in) x (out, in) -> (tokens, out), from zero_point_terms."""
    terms = zero_point_terms(q_x, q_w, x_zero_point, w_zero_point)
    acc = terms["q_x q_w"] - terms["Z_w rowsum(q_x)"] - terms["Z_x colsum(q_w)"] + terms["K Z_x Z_w"]
    if acc.numel() and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ValueError(f"the accumulator overflows int32 with {q_x.shape[1]} input features")
    return acc.to(torch.int32)


def requantize(acc: torch.Tensor, q31: int, right_shift: int, zero_point: int,
               dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """q_y = clamp(Z_y + round(M * acc), qmin, qmax) with M = q31 * 2^-31 * 2^-right_shift, integers only."""
    if dtype not in _CODE_RANGES:
        raise TypeError(f"dtype must be torch.int8 or torch.uint8, got {dtype}")
    zero_point = _check_zero_point(zero_point, dtype, "zero_point")
    scaled = multiply_by_quantized_multiplier(acc, q31, right_shift).to(torch.int64)
    low, high = _CODE_RANGES[dtype]
    return torch.clamp(scaled + zero_point, low, high).to(dtype)


def quantized_linear(q_x: torch.Tensor, x_scale: float, x_zero_point: int, q_w: torch.Tensor, w_scale: float,
                     w_zero_point: int, y_scale: float, y_zero_point: int, bias: torch.Tensor | None = None,
                     dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Integer-only linear layer: int32 accumulator (+ bias quantized with scale S_x S_w), requantized to dtype."""
    for name, value in (("x_scale", x_scale), ("w_scale", w_scale), ("y_scale", y_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    acc = int8_matmul_int32(q_x, q_w, x_zero_point, w_zero_point).to(torch.int64)
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (q_w.shape[0],):
            raise ValueError(f"bias must be a tensor of shape ({q_w.shape[0]},)")
        # the bias joins the accumulator, so it is quantized to int32 with the accumulator's scale S_x S_w
        acc = acc + torch.round(bias.double() / (x_scale * w_scale)).to(torch.int64)
    q31, right_shift = quantize_multiplier(x_scale * w_scale / y_scale)
    return requantize(acc.clamp(INT32_MIN, INT32_MAX), q31, right_shift, y_zero_point, dtype)


def pytorch_quantized_linear(q_x: torch.Tensor, x_scale: float, x_zero_point: int, q_w: torch.Tensor, w_scale: float,
                             y_scale: float, y_zero_point: int, bias: torch.Tensor | None = None,
                             engine: str = "fbgemm") -> torch.Tensor:
    """The reference: PyTorch's own quantized linear (uint8 x, symmetric int8 w) on a CPU engine, as uint8 codes.

    fbgemm and qnnpack requantize with a float multiply, round(acc * M), where quantized_linear uses
    gemmlowp's fixed point; the two agree except where the fixed point's double rounding flips a near-tie.
    """
    _check_codes(q_x, "q_x")
    _check_codes(q_w, "q_w")
    if q_x.dtype != torch.uint8 or q_w.dtype != torch.int8:
        raise TypeError(f"PyTorch's quantized linear takes uint8 activations and int8 weights, got {q_x.dtype} and "
                        f"{q_w.dtype}")
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"engine {engine!r} is not available here; supported: "
                         f"{torch.backends.quantized.supported_engines}")
    with warnings.catch_warnings():  # PyTorch deprecates its quantized dtypes, but they are still the reference
        warnings.simplefilter("ignore")
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            x = torch._make_per_tensor_quantized_tensor(q_x, x_scale, x_zero_point)
            w = torch._make_per_tensor_quantized_tensor(q_w, w_scale, 0)
            packed = torch.ops.quantized.linear_prepack(w, bias)
            return torch.ops.quantized.linear(x, packed, y_scale, y_zero_point).int_repr()
        finally:
            torch.backends.quantized.engine = previous
