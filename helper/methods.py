"""Lesson 06's comparison: each method as a small config (the "what") and one function that applies it. From 06.

Every method quantizes all linear layers of the decoder blocks (never lm_head or the embeddings),
calibrates on windows disjoint from the evaluation windows, and is scored with the lesson-04 kit.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from ._text import text_table
from .awq import AWQConfig, awq_quantize_model
from .evaluate import perplexity
from .gptq import GPTQConfig, gptq_quantize_model, rtn_quantize_weight
from .layers import fit_group_size
from .layerwise import decoder_blocks, linear_layers
from .mixed_precision import allocate_bits, fisher_sensitivity, layer_units
from .sizes import weight_storage_bits

__all__ = ["Method", "LESSON_06_METHODS", "grid_bits_per_weight", "method_bits_per_weight", "choose_int8_layers",
           "apply_method", "evaluate_methods", "method_table_text"]

KINDS = ("fp32", "rtn", "gptq", "awq", "awq+gptq", "mixed", "w8a8", "smoothquant", "llm_int8")


@dataclass(frozen=True)
class Method:
    """One row of the table: what to apply, on which grid, stored how.

    Grid and storage: symmetric, or asymmetric with an integer zero-point (zero_point_domain "int", as GPTQ/AWQ
    files) or a float minimum ("float", the course's scale+min); scale_bits 16 (fp16 scales, as checkpoints)
    or 32. The defaults are the course's simulated layers (fp32 scale and minimum, the per-layer AWQ);
    bench/lesson06_methods.py sets the checkpoint format (CHECKPOINT) and llm-awq's AWQ on every row.
    act_order, clip_search (MSE range search) and true_sequential are GPTQ's options; awq_search
    ("block" = llm-awq, "layer" = the simpler variant) and awq_clip AWQ's. int8_layers: full layer names kept
    at 8 bits per channel. mixed: int8_layers chosen by sensitivity within budget_bits (real storage).
    calibration: which calibration set (a key of the dict evaluate_methods receives).
    """

    name: str
    kind: str
    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    zero_point_domain: str = "float"
    scale_bits: int = 32
    act_order: bool = False
    clip_search: bool = False
    true_sequential: bool = False
    awq_search: str = "layer"
    awq_clip: bool = False
    int8_layers: tuple[str, ...] = ()
    budget_bits: float = 4.5
    calibration: str = "same"
    activations: str = "per_token"  # W8A8 only: "per_token" (dynamic) or "per_tensor" (static, calibrated)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("rtn", "gptq", "awq", "awq+gptq", "mixed"):
            self.gptq_config()  # validates bits and grid

    def gptq_config(self) -> GPTQConfig:
        """This row's grid and GPTQ options as a GPTQConfig."""
        return GPTQConfig(self.bits, self.group_size, self.symmetric, act_order=self.act_order,
                          clip_search=self.clip_search, zero_point_domain=self.zero_point_domain,
                          scale_bits=self.scale_bits, true_sequential=self.true_sequential)

    def awq_config(self, fast: bool = False, quantize: bool = True) -> AWQConfig:
        """This row's grid and AWQ options. The block search (which runs the attention block and MLP once per
        alpha, the dominant cost) uses the first 2,048 calibration tokens (4 windows, as the bench rows were
        measured), or 512 (one window) with fast; the layer search 512 evenly spaced tokens. 20 alphas as
        llm-awq, or 10 with fast (the notebook's configuration)."""
        search_tokens = 512 if fast or self.awq_search == "layer" else 2048
        return AWQConfig(self.bits, self.group_size, self.symmetric, search=self.awq_search, clip=self.awq_clip,
                         zero_point_domain=self.zero_point_domain, scale_bits=self.scale_bits, quantize=quantize,
                         max_tokens=search_tokens, **({"alphas": tuple(i / 10 for i in range(10))} if fast else {}))


LESSON_06_METHODS = (
    Method("fp32", "fp32", 32),
    Method("RTN int8 per-channel", "rtn", 8, None),
    Method("RTN int4 g128 sym", "rtn", 4),
    Method("RTN int4 g128 asym", "rtn", 4, symmetric=False),
    Method("GPTQ int4 g128 sym", "gptq", 4),
    Method("GPTQ int4 g128 sym act-order", "gptq", 4, act_order=True),
    Method("GPTQ int4 g128 asym", "gptq", 4, symmetric=False),
    Method("GPTQ int4 g128 asym act-order", "gptq", 4, symmetric=False, act_order=True),
    Method("AWQ int4 g128 sym", "awq", 4),
    Method("AWQ int4 g128 asym", "awq", 4, symmetric=False),
)


def _layer_bits(module: nn.Linear, bits: int, group_size: int | None, symmetric: bool, zero_point_domain: str,
                scale_bits: int) -> float:
    group = fit_group_size(module.in_features, group_size) if group_size else module.in_features
    return weight_storage_bits(bits, group, symmetric, zero_point_domain, scale_bits)


def grid_bits_per_weight(model: nn.Module, bits: int, group_size: int | None, symmetric: bool = True,
                         zero_point_domain: str = "float", scale_bits: int = 32,
                         exclude: tuple[str, ...] = ("lm_head",), int8_layers: tuple[str, ...] = ()) -> float:
    """Bits per linear weight of a per-group grid in its storage format (helper.weight_storage_bits per layer).

    Groups adapt where they do not divide in_features (g128 -> 96 on SmolLM2's 576 inputs); int8_layers are
    counted at 8 bits with one scale per output row. Defaults: the course's layers (fp32 scales and minimums);
    zero_point_domain="int", scale_bits=16 is the GPTQ/AWQ checkpoint format.
    """
    total_bits, total_weights = 0.0, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude):
            per_weight = (_layer_bits(module, 8, None, True, "int", scale_bits) if name in int8_layers else
                          _layer_bits(module, bits, group_size, symmetric, zero_point_domain, scale_bits))
            total_bits += module.weight.numel() * per_weight
            total_weights += module.weight.numel()
    if total_weights == 0:
        raise ValueError("the model has no linear layers outside the excluded ones")
    return total_bits / total_weights


def method_bits_per_weight(model: nn.Module, method: Method, int8_layers: tuple[str, ...] | None = None) -> float:
    """A row's bits per linear weight in its storage format (32 for fp32)."""
    if method.kind == "fp32":
        return 32.0
    return grid_bits_per_weight(model, method.bits, method.group_size, method.symmetric, method.zero_point_domain,
                                method.scale_bits, int8_layers=method.int8_layers if int8_layers is None else
                                int8_layers)


def _layer_configs(model: nn.Module, method: Method, int8_layers: tuple[str, ...]) -> dict[str, GPTQConfig]:
    """GPTQ configs for the int8 layers, keyed as gptq_quantize_blocks expects ("blocks.11.mlp.down_proj")."""
    prefix = next(name for name, module in model.named_modules() if module is decoder_blocks(model)) + "."
    int8 = dataclasses.replace(method.gptq_config(), bits=8, group_size=None, symmetric=True)
    return {"blocks." + name.removeprefix(prefix): int8 for name in int8_layers}


def _rtn(model: nn.Module, method: Method) -> nn.Module:
    """Round to nearest on the row's grid, in place (the same grid function GPTQ uses, no error feedback)."""
    config = method.gptq_config()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith("lm_head"):
                layer_config = (dataclasses.replace(config, bits=8, group_size=None, symmetric=True)
                                if name in method.int8_layers or method.bits == 8 and method.group_size is None else
                                dataclasses.replace(config, group_size=fit_group_size(module.in_features,
                                                                                      method.group_size)
                                                    if method.group_size else None))
                module.weight.copy_(rtn_quantize_weight(module.weight, layer_config))
    return model


def choose_int8_layers(model: nn.Module, method: Method, calibration_windows: torch.Tensor, fast: bool = False,
                       progress: bool = False) -> tuple[tuple[str, ...], dict[str, float]]:
    """Mixed precision's choice: (the layers kept in int8, Fisher sensitivity of each linear layer).

    Sensitivity: helper.fisher_sensitivity of the row's int4 grid (RTN), on 4 calibration windows (1 with fast);
    allocation: helper.allocate_bits, one unit per linear layer, within method.budget_bits in the row's storage.
    """
    if method.kind != "mixed":
        raise ValueError(f"method.kind must be 'mixed' to choose int8 layers, got {method.kind!r}")
    units = layer_units(model, "layer")
    config = method.gptq_config()
    names = [name for names in units.values() for name in names]

    def quantize(name: str, weight: torch.Tensor) -> torch.Tensor:
        group = fit_group_size(weight.shape[1], config.group_size) if config.group_size else None
        return rtn_quantize_weight(weight, dataclasses.replace(config, group_size=group))

    sensitivity = fisher_sensitivity(model, calibration_windows[:1 if fast else 4], names, quantize, progress)
    allocation = allocate_bits(model, units, sensitivity, method.budget_bits, method.group_size or 128,
                               symmetric=method.symmetric, zero_point_domain=method.zero_point_domain,
                               scale_bits=method.scale_bits)
    return tuple(unit for unit, bits in allocation.items() if bits == 8), sensitivity


def apply_method(model: nn.Module, method: Method, calibration_windows: torch.Tensor,
                 progress: bool = False, fast: bool = False, details: dict | None = None) -> tuple[nn.Module, float]:
    """A quantized copy of the model and its bits per linear weight in the row's storage format.

    Weights are simulated (fp32 tensors holding the dequantized grid values); bits per weight are those of
    the stored format (helper.weight_storage_bits, checked against packed tensors by the tests). The original
    model is untouched. fast: the notebook's configuration (AWQ: 10 alphas, 512 tokens; sensitivity on one
    window). details, if given, receives e.g. the int8 layers mixed precision chose.
    """
    if method.kind not in ("fp32", "rtn", "gptq", "awq", "awq+gptq", "mixed"):
        raise ValueError(f"{method.kind} is applied with helper.smoothquant / helper.outliers, not apply_method")
    int8_layers = method.int8_layers
    if method.kind == "mixed":
        int8_layers, _ = choose_int8_layers(model, method, calibration_windows, fast, progress)
        if details is not None:
            details["int8_layers"] = int8_layers
    model = copy.deepcopy(model)
    if method.kind == "fp32":
        return model, 32.0
    if method.kind == "rtn":
        _rtn(model, method)
    if method.kind in ("awq", "awq+gptq"):
        results = awq_quantize_model(model, calibration_windows, method.awq_config(fast, method.kind == "awq"),
                                     progress=progress)
        if details is not None:
            details["awq"] = results
    if method.kind in ("gptq", "awq+gptq", "mixed"):
        gptq_quantize_model(model, calibration_windows, method.gptq_config(), progress=progress,
                            layer_configs=_layer_configs(model, method, int8_layers))
    return model, method_bits_per_weight(model, method, int8_layers)


def evaluate_methods(model: nn.Module, evaluation_windows: torch.Tensor,
                     calibration_windows: torch.Tensor | dict[str, torch.Tensor],
                     methods: tuple[Method, ...] = LESSON_06_METHODS, progress: bool = False, fast: bool = False,
                     batch_size: int = 4) -> list[dict[str, object]]:
    """Perplexity, bits per weight and seconds (quantization + evaluation) for each method, by one code path.

    calibration_windows: one set, or a dict of sets chosen by each method's `calibration` ("same" by default).
    """
    sets = calibration_windows if isinstance(calibration_windows, dict) else {"same": calibration_windows}
    rows = []
    for method in methods:
        if method.calibration not in sets:
            raise ValueError(f"{method.name} calibrates on {method.calibration!r}; given sets: {sorted(sets)}")
        start = time.perf_counter()
        details: dict = {}
        quantized, bits = apply_method(model, method, sets[method.calibration], progress, fast, details)
        seconds_quantize = time.perf_counter() - start
        rows.append({"method": method.name, "perplexity": perplexity(quantized, evaluation_windows, batch_size),
                     "bits_per_weight": bits, "seconds_quantize": seconds_quantize,
                     "seconds": time.perf_counter() - start,
                     **({"int8_layers": list(details["int8_layers"])} if "int8_layers" in details else {})})
        del quantized
    return rows


def method_table_text(rows: list[dict[str, object]], base: float | None = None, with_seconds: bool = False) -> str:
    """The results as a text table; with base, also the change in perplexity relative to it."""
    header = ["method", "perplexity"] + (["vs fp32"] if base else []) + ["bits/weight"] + (
        ["quantize (s)"] if with_seconds else [])
    body = [[r["method"], f"{r['perplexity']:,.2f}"] + ([f"{100 * (r['perplexity'] / base - 1):+.0f} %"] if base else [])
            + [f"{r['bits_per_weight']:.2f}"] + ([f"{r['seconds_quantize']:.0f}"] if with_seconds else [])
            for r in rows]
    return text_table(header, body)
