"""Lesson 07's checkers: LoRA's parameter count, QLoRA's memory for a 7 B model, LSQ's step-size gradient."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..codebooks import codebook_bits_per_parameter
from ..lora import lora_memory_bytes
from ..qat_llm import lsq_fake_quantize
from .core import Feedback, as_tensor, is_number

__all__ = ["CHECKERS"]

LORA_SHAPE = (576, 1536)  # SmolLM2's mlp.down_proj: 576 outputs, 1536 inputs
LORA_RANK = 8
SEVEN_B = 6_738_415_616  # LLaMA-7B's parameter count (Touvron et al. 2023)
LSQ_WEIGHTS, LSQ_SCALE, LSQ_ZERO_POINT = (0.37, 2.0), 0.1, 8  # int4 codes 0..15


def _lora_params(answer: Any) -> Feedback:
    out_features, in_features = LORA_SHAPE
    expected = LORA_RANK * (in_features + out_features)
    if not is_number(answer):
        return Feedback(False, "give the number of trainable parameters as an integer.")
    if answer == expected:
        return Feedback(True, f"A is {LORA_RANK} x {in_features} and B is {out_features} x {LORA_RANK}: {expected:,} "
                              f"parameters, {expected / (in_features * out_features):.1%} of the layer's weights.")
    slips = {LORA_RANK * in_features: "that is A alone; B (out x r) trains too.",
             LORA_RANK * out_features: "that is B alone; A (r x in) trains too.",
             in_features * out_features: "that is the full weight; LoRA trains only A (r x in) and B (out x r).",
             LORA_RANK * in_features * out_features: "r x in x out is not it: A and B are two thin matrices."}
    if answer in slips:
        return Feedback(False, slips[answer])
    return Feedback(False, f"{answer} is not it: count A (r x in) plus B (out x r).")


def _qlora_7b_gb(answer: Any) -> Feedback:
    bits = codebook_bits_per_parameter(4, 64, double_quant=True)
    expected = lora_memory_bytes(SEVEN_B, 0, bits)["base weights"] / 1e9
    if not is_number(answer):
        return Feedback(False, "give gigabytes (1 GB = 10^9 bytes) as a number.")
    if math.isclose(answer, expected, abs_tol=0.01):
        return Feedback(True, f"{SEVEN_B:,} x {bits:.3f} / 8 = {expected:.2f} GB: a 7 B model's frozen base fits a "
                              "laptop; in bf16 it would take 13.48 GB.")
    slips = ((SEVEN_B * 4.5 / 8e9, "that is NF4 without double quantization (4.5 bits); with it the absmax "
                                   "constants cost 8/64 + 32/16384 bits: 4.127."),
             (SEVEN_B * 4 / 8e9, "the 4-bit codes alone; add the block constants: 4.127 bits per weight."),
             (SEVEN_B * 2 / 1e9, "that is bf16 (2 bytes per weight); the base is NF4 with double quantization."),
             (SEVEN_B * 4.127 / 8 / 2**30, "that is GiB (2^30 bytes); give GB, 10^9 bytes."))
    for value, message in slips:
        if math.isclose(answer, value, abs_tol=0.01):
            return Feedback(False, message)
    return Feedback(False, f"{answer} is not it: parameters x bits per weight / 8 bytes, then / 10^9.")


def _lsq_gradient(answer: Any) -> Feedback:
    weight = torch.tensor(LSQ_WEIGHTS, dtype=torch.float64).reshape(1, 1, -1)
    scale = torch.tensor([[[LSQ_SCALE]]], dtype=torch.float64, requires_grad=True)
    zero_point = torch.full((1, 1, 1), float(LSQ_ZERO_POINT), dtype=torch.float64)
    expected = []
    for index in range(weight.shape[-1]):
        scale.grad = None
        lsq_fake_quantize(weight, scale, zero_point, 0, 15)[..., index].sum().backward()
        expected.append(scale.grad.item())
    expected = torch.tensor(expected, dtype=torch.float64)
    got = as_tensor(answer)
    if got is None or got.shape != (2,):
        return Feedback(False, "give two numbers: d w_hat / d s for w = 0.37, then for w = 2.0.")
    if torch.allclose(got, expected, atol=1e-3):
        return Feedback(True, f"{expected[0]:.1f} inside the grid (round(3.7) - 3.7) and {expected[1]:.0f} where the "
                              "code is clamped (15 - 8): the scale learns to trade rounding error against clipping.")
    if torch.allclose(got[0], -expected[0], atol=1e-3):
        return Feedback(False, "the first sign is off: d/ds [round(w/s) s] = round(w/s) - w/s with the STE, "
                               "= 4 - 3.7.")
    if torch.allclose(got[0], torch.zeros((), dtype=torch.float64), atol=1e-3):
        return Feedback(False, "with the STE, round(w/s) passes the gradient of w/s through: "
                               "d/ds [round(w/s) s] = round(w/s) - w/s, not 0.")
    if torch.allclose(got[0], expected[0], atol=1e-3):
        return Feedback(False, "the first is right; w = 2.0 gives code 20 + 8, clamped to 15, so w_hat = (15 - 8) s.")
    return Feedback(False, "not yet: inside the grid d w_hat / d s = round(w/s) - w/s; clamped, it is (q - z).")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "07.lora_params": _lora_params,
    "07.qlora_7b_gb": _qlora_7b_gb,
    "07.lsq_gradient": _lsq_gradient,
}
