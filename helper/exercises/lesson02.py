"""Lesson 02's checkers: footprints of models cast to bf16."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any, Callable

import torch

from ..evaluate import weight_differences
from ..models import DummyModel, build_model
from ..sizes import model_memory_bytes
from .core import Feedback, is_number

__all__ = ["CHECKERS"]


@functools.lru_cache(maxsize=1)
def _flan_t5_params() -> int:
    return sum(p.numel() for p in build_model("google/flan-t5-small").parameters())


def _t5_bf16_footprint(answer: Any) -> Feedback:
    params = _flan_t5_params()
    expected = model_memory_bytes(params, "BF16")  # T5 has no buffers: parameters are the whole footprint
    if not is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{params:,} parameters x 2 bytes = {expected:,} bytes, exactly half of fp32.")
    if answer == model_memory_bytes(params, "FP32"):
        return Feedback(False, "that is the fp32 footprint; bf16 has 2 bytes per parameter.")
    if answer == params * 16:
        return Feedback(False, "that counts bits; divide by 8.")
    for unit, size in (("MB", 1e6), ("GB", 1e9), ("MiB", 2**20), ("GiB", 2**30)):
        if math.isclose(answer, expected / size, rel_tol=5e-3):
            return Feedback(False, f"that is the footprint in {unit}; the question asks for bytes.")
    return Feedback(False, f"{answer:,} is off by {answer - expected:+,} bytes. Footprint = parameters x bytes "
                           "per parameter (+ buffers, which T5 does not have).")


def _dummy_layer_most_changed(answer: Any) -> Feedback:
    model = DummyModel()
    differences = weight_differences(model, copy.deepcopy(model).to(torch.bfloat16))
    layers: dict[str, float] = {}
    for name, difference in differences.items():
        layer = name.rsplit(".", 1)[0]
        layers[layer] = max(layers.get(layer, 0.0), difference)
    expected = max(layers, key=layers.get)
    if not isinstance(answer, str):
        return Feedback(False, f"give a layer name as a string, one of {sorted(layers)}.")
    answer = answer.strip()
    if answer in differences:  # a parameter name ("linear_1.bias"): judge the layer that holds it
        answer = answer.rsplit(".", 1)[0]
    if answer == expected:
        return Feedback(True, f"{expected} changes most (max |difference| {layers[expected]:.2e}); bf16 rounds "
                              "each value to 8 significant bits, so every weight moves by up to 0.4 % of itself.")
    if answer not in layers:
        return Feedback(False, f"{answer!r} is not a DummyModel layer; layers: {sorted(layers)}.")
    if layers[answer] == 0.0:
        return Feedback(False, f"{answer} does not change at all: LayerNorm starts at weight 1 and bias 0, "
                               "which bf16 stores exactly.")
    return Feedback(False, f"{answer} changes by at most {layers[answer]:.2e}; another layer changes more. "
                           "Try helper.weight_differences.")


@functools.lru_cache(maxsize=1)
def _blip_unhalved_bytes() -> int:
    model = build_model("Salesforce/blip-image-captioning-base")
    fp32 = model.get_memory_footprint()
    bf16 = model.to(torch.bfloat16).get_memory_footprint()
    return 2 * bf16 - fp32


def _blip_unhalved(answer: Any) -> Feedback:
    expected = _blip_unhalved_bytes()
    if not is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{expected:,} bytes: the int64 position_ids buffer (512 x 8 bytes). Casting a "
                              "model to bf16 converts floating-point tensors only; integer buffers keep their dtype.")
    if answer == expected // 2:
        return Feedback(False, "close: that is bf16 - fp32 / 2, the residual the original course shows. The buffer is "
                               "in both footprints at full size, so that residual is half of it.")
    return Feedback(False, f"{answer:,} is not it. Compute 2 x (bf16 footprint) - (fp32 footprint), and look for "
                           "a buffer whose dtype is not floating point.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "02.t5_bf16_footprint": _t5_bf16_footprint,
    "02.dummy_layer_most_changed": _dummy_layer_most_changed,
    "02.blip_bytes_not_halved": _blip_unhalved,
}
