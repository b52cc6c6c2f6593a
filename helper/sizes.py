"""Bytes per parameter and model memory at each format. Taught in 01 (and 02 for real modules)."""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn

from ._text import text_table
from .dtypes import bit_width, resolve_dtype
from .validation import check_int_in_range, check_real

__all__ = ["FORMAT_BITS", "bits_per_parameter", "model_memory_bytes", "format_bytes", "memory_table_text",
           "tensor_bytes", "compute_module_sizes", "module_sizes_text", "footprints_by_dtype", "size_breakdown",
           "weight_storage_bits"]

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
    n_params = check_int_in_range(n_params, "n_params")
    if n_params < 0:
        raise ValueError(f"n_params must be >= 0, got {n_params}")
    return n_params * bits_per_parameter(fmt) // 8


def format_bytes(n_bytes: float) -> str:
    """Human-readable size in decimal units (GB = 10^9 bytes, as model cards use): 1.5e9 -> '1.50 GB'."""
    n_bytes = check_real(n_bytes, "n_bytes")
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


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds: for a quantized tensor (optimum-quanto), its data plus its scales."""
    if hasattr(tensor, "__tensor_flatten__"):
        # Tensor subclasses (int8 data + float scale, packed int4 ...) report the *logical* dtype and
        # shape; the memory is in their inner tensors, which may themselves be subclasses.
        inner_names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in inner_names)
    return tensor.numel() * tensor.element_size()


def weight_storage_bits(bits: int, group_size: int, symmetric: bool = True, zero_point_domain: str = "int",
                        scale_bits: int = 16) -> float:
    """Bits per weight of a per-group grid: bits + (scale_bits + zero-point bits) / group_size. Used in 06.

    Checkpoint format of GPTQ/AWQ files (compressed-tensors pack-quantized, AutoAWQ): fp16 scales and, for an
    asymmetric grid, integer zero-points packed at the code width: int4 g128 asym = 4 + (16 + 4) / 128 = 4.156,
    sym = 4 + 16 / 128 = 4.125. The course's simulated grids (scale_bits=32, zero_point_domain="float": an fp32
    minimum per group, as W4A16Linear stores it) cost 4 + (32 + 32) / 128 = 4.5.
    """
    if bits < 1 or group_size < 1:
        raise ValueError(f"bits and group_size must be >= 1, got bits={bits}, group_size={group_size}")
    if scale_bits not in (16, 32):
        raise ValueError(f"scale_bits must be 16 (fp16 scales) or 32 (fp32), got {scale_bits}")
    if zero_point_domain not in ("int", "float"):
        raise ValueError(f"zero_point_domain must be 'int' or 'float', got {zero_point_domain!r}")
    zero_point_bits = 0 if symmetric else (bits if zero_point_domain == "int" else scale_bits)
    return bits + (scale_bits + zero_point_bits) / group_size


def compute_module_sizes(model: nn.Module) -> dict[str, int]:
    """Bytes of parameters and buffers under every module prefix; '' is the whole model. Taught in 02.

    Tied weights count once (like get_memory_footprint); quantized tensors count data and scales.
    """
    sizes: dict[str, int] = defaultdict(int)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        size = tensor_bytes(tensor)
        parts = name.split(".")
        for depth in range(len(parts) + 1):  # '', 'encoder', 'encoder.block', ... the tensor's own name
            sizes[".".join(parts[:depth])] += size
    return dict(sizes)


def module_sizes_text(model: nn.Module, depth: int = 1) -> str:
    """Table of module sizes down to `depth` dots, largest first, with each one's share of the total."""
    sizes = compute_module_sizes(model)
    total = sizes[""]
    rows = sorted(((name, size) for name, size in sizes.items() if name and name.count(".") < depth),
                  key=lambda item: -item[1])
    body = [[name, f"{size:,}", f"{100 * size / total:.1f} %"] for name, size in rows]
    body.append(["(total)", f"{total:,}", "100.0 %"])
    return text_table(["module", "bytes", "share"], body)


def footprints_by_dtype(model: nn.Module,
                        dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
                        ) -> dict[str, int]:
    """Bytes of the model cast to each dtype (on a copy: the model itself is left untouched)."""
    result = {}
    for dtype in dtypes:
        result[str(dtype).removeprefix("torch.")] = compute_module_sizes(copy.deepcopy(model).to(dtype))[""]
    return result


_CODE_NAMES = {"_data", "int8_weights", "packed_weights"}
_SCALE_NAMES = {"_scale", "_shift", "scales", "minimums"}


def _kind(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _CODE_NAMES:
        return "quantized weight codes"
    if leaf in _SCALE_NAMES:
        return "weight scales (and minimums)"
    return None


def size_breakdown(model: nn.Module) -> dict[str, int]:
    """Bytes by kind: quantized codes, their scales, float tensors left as they were, and other buffers."""
    breakdown: dict[str, int] = defaultdict(int)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if hasattr(tensor, "__tensor_flatten__"):  # an optimum-quanto weight: split into its parts
            for inner in tensor.__tensor_flatten__()[0]:
                breakdown[_kind(inner) or "quantized weight codes"] += tensor_bytes(getattr(tensor, inner))
            continue
        kind = _kind(name)
        if kind is None:
            leaf = name.rsplit(".", 1)[-1]
            kind = ("activation scales (quanto buffers)" if leaf in ("input_scale", "output_scale")
                    else "float tensors left as they were" if tensor.is_floating_point() else "integer buffers")
        breakdown[kind] += tensor_bytes(tensor)
    return dict(breakdown)
