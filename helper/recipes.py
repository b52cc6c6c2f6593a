"""Named ways to shrink a model (the "what") and one function that applies any of them (the "how"). From 04."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from ._text import text_table
from .evaluate import linear_weight_bits, perplexity
from .layers import W2A16Linear, W4A16Linear, W8A16Linear, replace_linear
from .sizes import compute_module_sizes

__all__ = ["Recipe", "LESSON_04_RECIPES", "apply_recipe", "evaluate_recipes", "recipe_table_text"]


@dataclass(frozen=True)
class Recipe:
    """One configuration: cast to a dtype, the course's layers (bits, group size, symmetric), or quanto."""

    name: str
    kind: str  # "dtype", "ours" or "quanto"
    bits: int = 16
    group_size: int | None = None  # None: per output channel
    symmetric: bool = True
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.kind not in ("dtype", "ours", "quanto"):
            raise ValueError(f"kind must be 'dtype', 'ours' or 'quanto', got {self.kind!r}")
        if self.kind == "ours" and self.bits not in (2, 4, 8):
            raise ValueError(f"the course's layers store 2, 4 or 8 bits, got {self.bits}")
        if self.kind == "quanto" and self.bits not in (4, 8):
            raise ValueError(f"quanto recipes here are qint4 or qint8, got {self.bits} bits")


LESSON_04_RECIPES = (
    Recipe("fp32", "dtype", 32),
    Recipe("bf16", "dtype", 16, dtype=torch.bfloat16),
    Recipe("int8 per-channel (ours)", "ours", 8),
    Recipe("int8 per-channel (quanto)", "quanto", 8),
    Recipe("int4 g128 symmetric (ours)", "ours", 4, 128, True),
    Recipe("int4 g128 scale+min (ours)", "ours", 4, 128, False),
    Recipe("int4 g128 (quanto qint4)", "quanto", 4, 128, False),
    Recipe("int4 g64 symmetric (ours)", "ours", 4, 64, True),
    Recipe("int4 g64 scale+min (ours)", "ours", 4, 64, False),
    Recipe("int4 g32 symmetric (ours)", "ours", 4, 32, True),
    Recipe("int4 g32 scale+min (ours)", "ours", 4, 32, False),
    Recipe("int2 g32 scale+min (ours)", "ours", 2, 32, False),
)


def apply_recipe(model: nn.Module, recipe: Recipe, exclude: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """A quantized (or cast) copy of model; the original is untouched. Group sizes adapt to each layer (as quanto)."""
    model = copy.deepcopy(model)
    if recipe.kind == "dtype":
        return model.to(recipe.dtype)
    if recipe.kind == "quanto":
        from optimum.quanto import freeze, qint4, qint8, quantize

        quantize(model, weights=qint8 if recipe.bits == 8 else qint4, exclude=list(exclude))
        freeze(model)
        return model
    if recipe.bits == 8:
        return replace_linear(model, W8A16Linear, exclude=exclude)
    layer = W4A16Linear if recipe.bits == 4 else W2A16Linear
    return replace_linear(model, layer, exclude=exclude, group_size=recipe.group_size or 128,
                          symmetric=recipe.symmetric, adapt_group_size=True)


def evaluate_recipes(model: nn.Module, windows: torch.Tensor, recipes: tuple[Recipe, ...],
                     progress: bool = False, batch_size: int = 4) -> list[dict[str, object]]:
    """Perplexity, model size and linear-weight bits per weight for each recipe applied to model.

    Batches of 4 windows: quantized layers dequantize once per forward, so fewer, larger batches are faster.
    """
    rows = []
    for recipe in recipes:
        start = time.perf_counter()
        quantized = apply_recipe(model, recipe)
        bits = linear_weight_bits(quantized)
        rows.append({"recipe": recipe.name, "perplexity": perplexity(quantized, windows, batch_size, progress),
                     "size_bytes": compute_module_sizes(quantized)[""], "bits_per_weight": bits["bits_per_weight"],
                     "seconds": time.perf_counter() - start})
        del quantized
    return rows


def recipe_table_text(rows: list[dict[str, object]], with_seconds: bool = False) -> str:
    """The results as a text table: perplexity, size in MB and bits per linear weight."""
    header = ["recipe", "perplexity", "size (MB)", "bits/weight"] + (["seconds"] if with_seconds else [])
    body = [[r["recipe"], f"{r['perplexity']:.2f}", f"{r['size_bytes'] / 1e6:.1f}", f"{r['bits_per_weight']:.2f}"]
            + ([f"{r['seconds']:.0f}"] if with_seconds else []) for r in rows]
    return text_table(header, body)
