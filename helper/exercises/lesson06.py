"""Lesson 06's checkers: GPTQ's Hessian and one GPTQ column step, SmoothQuant's scales, mixed-precision bits."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..gptq import _inverse_cholesky, gptq_column_step
from ..layers import fit_group_size
from ..linear_quant import QuantScheme
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


def _smollm2_mixed_bits(int8_scales: bool = True, int4_scales: bool = True) -> float:
    """SmolLM2 block: q,o 576x576; k,v 192x576; gate, up 1536x576; down 576x1536 (out x in); fp32 scales."""
    shapes = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
              "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}
    total = sum(o * i for o, i in shapes.values())
    return sum(o * i * (8 + int8_scales * 32 / i if n == "down" else 4 + int4_scales * 32 / fit_group_size(i, 128))
               for n, (o, i) in shapes.items()) / total


def _mixed_bits(answer: Any) -> Feedback:
    expected = _smollm2_mixed_bits()
    if not is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    # The slips differ from the answer by as little as 0.005 bits: compare to 0.001.
    if math.isclose(answer, expected, abs_tol=0.001):
        return Feedback(True, f"{expected:.3f} bits/weight: down_proj is a quarter of the weights, so int8 there "
                              "costs a whole extra bit per weight on average.")
    slips = ((_smollm2_mixed_bits(False, False), "right for the codes alone; add the fp32 scales (32 bits per "
                                                 "group of 96 for int4, per row of 1536 for int8)."),
             (_smollm2_mixed_bits(int8_scales=False), "you forgot the int8 scales: one fp32 scale per row of 1536 "
                                                      "inputs adds 32 / 1536 = 0.021 bits to each int8 weight."),
             (_smollm2_mixed_bits(int4_scales=False), "you forgot the int4 scales: 32 bits per group of 96 add "
                                                      "0.333 bits to each int4 weight."))
    for value, message in slips:
        if math.isclose(answer, value, abs_tol=0.001):
            return Feedback(False, message)
    if abs(answer - expected) < 0.01:
        return Feedback(False, f"close: give three decimals (scales add small amounts), got {answer}.")
    return Feedback(False, f"{answer} is not it: weight each layer's bits by its share of the block's weights.")


def _hidden_gptq_problems() -> list[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]]:
    """(W, Hinv, j, scale) on seeded matrices the learner never sees: correlated inputs, columns j = 0 and middle."""
    problems = []
    for seed, (rows, columns, j) in enumerate(((4, 6, 0), (8, 12, 5), (16, 32, 17))):
        generator = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(256, columns, generator=generator) @ (torch.eye(columns) + 0.6 * torch.randn(
            columns, columns, generator=generator) / columns ** 0.5)
        W = torch.randn(rows, columns, generator=generator)
        Hinv = _inverse_cholesky(2 * x.T @ x / x.shape[0], 0.01)
        problems.append((W, Hinv, j, W.abs().amax(dim=1) / 7))
    return problems


def _step_variants(W: torch.Tensor, Hinv: torch.Tensor, j: int, scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """The right step and the usual slips, each as the W it leaves."""
    q = torch.clamp(torch.round(W[:, j] / scale), -8, 7) * scale
    variants = {}
    for slip, error, row in (("no divide", W[:, j] - q, Hinv[j]), ("column", (W[:, j] - q) / Hinv[j, j], Hinv[:, j]),
                             ("sign", -(W[:, j] - q) / Hinv[j, j], Hinv[j])):
        wrong = W.clone()
        wrong[:, j:] -= torch.outer(error, row[j:])
        variants[slip] = wrong
    return variants


def _gptq_column_step(answer: Any) -> Feedback:
    if not callable(answer):
        return Feedback(False, "pass your function itself (gptq_step), not its result.")
    scheme = QuantScheme(bits=4, granularity="per_channel", axis=0)
    for W, Hinv, j, scale in _hidden_gptq_problems():
        case = f"on a hidden {W.shape[0]}x{W.shape[1]} weight with j={j}"
        expected = W.clone()
        gptq_column_step(expected, Hinv, j, scale, torch.zeros_like(scale), scheme)  # helper's step
        try:
            got = answer(W.clone(), Hinv.clone(), j, scale.clone())
        except Exception as error:  # a learner's function may fail in any way; say how
            return Feedback(False, f"{case} your function raised {type(error).__name__}: {error}")
        if got is None:
            return Feedback(False, "your function returned None: end it with `return W`.")
        got = as_tensor(got)
        if got is None or got.shape != W.shape:
            return Feedback(False, f"{case}: return W itself, shape {tuple(W.shape)}, after the step.")
        got, expected = got.float(), expected.float()
        if torch.allclose(got, expected, atol=1e-5):
            continue
        if not torch.allclose(got[:, :j], W[:, :j], atol=1e-6):
            return Feedback(False, f"{case}: columns before j changed; the update touches columns j and later only.")
        if torch.allclose(got, W, atol=1e-7):
            return Feedback(False, f"{case}: W is unchanged; step 3 must subtract the error's share from W[:, j:].")
        variants = _step_variants(W, Hinv, j, scale)
        messages = {"no divide": "step 2 (error) is off: divide w_j - q_j by Hinv[j, j].",
                    "column": "step 3 (update) uses a column of Hinv; use its row j: Hinv[j, j:].",
                    "sign": "step 3 (update) has the wrong sign: e = (w_j - q_j) / Hinv[j, j], then subtract."}
        for slip, wrong in variants.items():
            if torch.allclose(got, wrong.float(), atol=1e-5):
                return Feedback(False, f"{case}: {messages[slip]}")
        if not torch.allclose(got[:, j], expected[:, j], atol=1e-5):
            if torch.allclose(got[:, j + 1:], expected[:, j + 1:], atol=1e-5):
                return Feedback(False, f"{case}: the later columns are right but column j is not the quantized "
                                       "value; update W[:, j:] (from j, not j + 1) so column j becomes q_j.")
            return Feedback(False, f"{case}: step 1 (quantize) is off: q_j = clamp(round(W[:, j] / scale), -8, 7) "
                                   "* scale, one scale per row.")
        return Feedback(False, f"{case}: column j is right but the later columns are not: e = (w_j - q_j) / "
                               "Hinv[j, j], then W[:, j:] -= outer(e, Hinv[j, j:]).")
    return Feedback(True, "your step equals helper.gptq_column_step on three hidden weights: column j becomes its "
                          "quantized value and the later columns absorb its error.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "06.hessian": _hessian,
    "06.smoothquant_scales": _smoothquant_scales,
    "06.mixed_bits_down_int8": _mixed_bits,
    "06.gptq_column_step": _gptq_column_step,
}
