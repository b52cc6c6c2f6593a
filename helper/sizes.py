"""Bytes per parameter and model memory at each format. Taught in 01 (and 02 for real modules)."""

from __future__ import annotations

import torch

from ._text import text_table
from .dtypes import bit_width, resolve_dtype

__all__ = ["FORMAT_BITS", "bits_per_parameter", "model_memory_bytes", "format_bytes", "memory_table_text"]

# Formats a weight can be stored in, by the name the lessons use. INT4 is not a torch dtype:
# two 4-bit values share one byte once packed (lesson 04).
FORMAT_BITS: dict[str, int] = {
    "FP32": bit_width(torch.float32),
    "FP16": bit_width(torch.float16),
    "BF16": bit_width(torch.bfloat16),
    "FP8": bit_width(torch.float8_e4m3fn),
    "INT8": bit_width(torch.int8),
    "INT4": 4,
}


def bits_per_parameter(fmt: str | torch.dtype) -> int:
    """Storage bits of one parameter: 'BF16' -> 16, 'INT4' -> 4, torch.int8 -> 8."""
    if isinstance(fmt, str) and fmt.upper() in FORMAT_BITS:
        return FORMAT_BITS[fmt.upper()]
    if isinstance(fmt, str) and fmt.lower() in ("int4", "4bit"):
        return 4
    try:
        return bit_width(resolve_dtype(fmt))
    except ValueError:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMAT_BITS)} or a torch dtype") from None


def model_memory_bytes(n_params: int, fmt: str | torch.dtype) -> int:
    """Bytes to hold n_params weights in fmt (weights only: no activations, KV cache or scales)."""
    if n_params < 0:
        raise ValueError(f"n_params must be >= 0, got {n_params}")
    return n_params * bits_per_parameter(fmt) // 8


def format_bytes(n_bytes: float) -> str:
    """Human-readable size in decimal units (GB = 10^9 bytes, as model cards use): 1.5e9 -> '1.50 GB'."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n_bytes) >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{int(n_bytes)} B"


def memory_table_text(param_counts: dict[str, int], formats: tuple[str, ...] = tuple(FORMAT_BITS)) -> str:
    """Plain-text table: one row per model, one column per format, memory for the weights."""
    header = ["model", "params", *formats]
    body = [[name, f"{n:,}", *(format_bytes(model_memory_bytes(n, f)) for f in formats)]
            for name, n in param_counts.items()]
    return text_table(header, body)
