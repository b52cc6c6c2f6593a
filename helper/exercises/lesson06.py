"""Lesson 06's checkers: GPTQ's Hessian, SmoothQuant's scales, mixed-precision bits."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..layers import fit_group_size
from .core import Feedback, as_tensor, is_number

__all__ = ["CHECKERS"]


HESSIAN_X = [[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]]  # 3 calibration tokens, 2 input features (lesson 06)


def _hessian(answer: Any) -> Feedback:
    x = torch.tensor(HESSIAN_X, dtype=torch.float64)
    expected = 2 * x.T @ x / x.shape[0]
    got = as_tensor(answer)
    if got is None:
        return Feedback(False, "give a 2 x 2 tensor (or nested list) of numbers.")
    if got.shape == (3, 3):
        return Feedback(False, "that is 3 x 3: H is features x features, X^T X (inputs are the rows of X).")
    if got.shape != (2, 2):
        return Feedback(False, f"H must be 2 x 2 (one row and column per input feature), got {tuple(got.shape)}.")
    if torch.allclose(got, expected, atol=1e-3):
        return Feedback(True, f"H = 2 X^T X / n = {[[round(v, 3) for v in row] for row in expected.tolist()]}.")
    if torch.allclose(got, expected / 2, atol=1e-3):
        return Feedback(False, "missing the factor 2 (the derivative of a square): H = 2 X^T X / n.")
    if torch.allclose(got, expected * 3, atol=1e-3):
        return Feedback(False, "that is the sum over tokens; GPTQ averages: divide by n = 3.")
    return Feedback(False, "not yet: H = 2 X^T X / n with X the (3, 2) matrix of calibration inputs.")


def _smoothquant_scales(answer: Any) -> Feedback:
    act, weight = torch.tensor([16.0, 1.0, 4.0], dtype=torch.float64), torch.tensor([0.25, 1.0, 4.0], dtype=torch.float64)
    expected = act.sqrt() / weight.sqrt()
    got = as_tensor(answer)
    if got is None or got.shape != (3,):
        return Feedback(False, "give three numbers, one scale per input channel.")
    if torch.allclose(got, expected, atol=1e-3):
        return Feedback(True, f"s = sqrt(max|X|) / sqrt(max|W|) = {expected.tolist()}: channel 0's activations "
                              "shrink 8x, its weights grow 8x, and both now peak at 2.")
    if torch.allclose(got, 1 / expected, atol=1e-3):
        return Feedback(False, "upside down: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha).")
    return Feedback(False, "not yet: with alpha = 0.5, s_j = sqrt(max|X_j|) / sqrt(max|W_j|).")


def _smollm2_mixed_bits() -> tuple[float, float]:
    """SmolLM2 block: q,o 576x576; k,v 192x576; gate, up 1536x576; down 576x1536 (out x in)."""
    shapes = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
              "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}
    total = sum(o * i for o, i in shapes.values())
    with_scales = sum(o * i * (8 + 32 / i if n == "down" else 4 + 32 / fit_group_size(i, 128))
                      for n, (o, i) in shapes.items()) / total
    without_scales = sum(o * i * (8 if n == "down" else 4) for n, (o, i) in shapes.items()) / total
    return with_scales, without_scales


def _mixed_bits(answer: Any) -> Feedback:
    expected, codes_only = _smollm2_mixed_bits()
    if not is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    if math.isclose(answer, expected, abs_tol=0.01):
        return Feedback(True, f"{expected:.3f} bits/weight: down_proj is a quarter of the weights, so int8 there "
                              "costs a whole extra bit per weight on average.")
    if math.isclose(answer, codes_only, abs_tol=0.01):
        return Feedback(False, "right for the codes alone; add the fp32 scales (32 bits per group of 96, or per "
                              "row of 1536 for int8).")
    return Feedback(False, f"{answer} is not it: weight each layer's bits by its share of the block's weights.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "06.hessian": _hessian,
    "06.smoothquant_scales": _smoothquant_scales,
    "06.mixed_bits_down_int8": _mixed_bits,
}
