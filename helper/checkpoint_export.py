"""A GPTQ checkpoint as AutoGPTQ / transformers lay it out: qweight, qzeros, scales, g_idx. Taught in 09.

For each linear layer (out, in) at `bits` bits, groups of `group_size` inputs, p = 32 // bits codes per int32:
  qweight  int32 (in / p, out)      codes packed along the input dimension, code i in bits [bits*(i % p), ...)
  qzeros   int32 (groups, out / p)  zero-points packed along the output dimension, stored as zero - 1
                                    (the "v1" GPTQ format transformers and AutoGPTQ read)
  scales   fp16  (groups, out)
  g_idx    int32 (in,)              the group of every input column (act-order files permute it)
  w[o, i] = scales[g_idx[i], o] * (q[i, o] - (qzeros[g_idx[i], o] + 1))
Our lesson-06 GPTQ results (integer zero-points, or symmetric grids whose zero is 2^(bits-1)) export exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .linear_quant import QuantizedTensor
from .validation import check_choice

__all__ = ["GPTQ_PACK_BITS", "pack_int32", "unpack_int32", "export_gptq_checkpoint", "read_gptq_checkpoint"]

GPTQ_PACK_BITS = (2, 4, 8)  # widths that divide 32, as the format packs them


def pack_int32(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack unsigned codes 32 // bits per int32 along dim (code k of a word in bits [bits k, bits (k + 1)))."""
    bits = check_choice(bits, "bits", GPTQ_PACK_BITS)
    per_word = 32 // bits
    if codes.is_floating_point() or codes.min() < 0 or codes.max() >= 1 << bits:
        raise ValueError(f"codes must be integers in [0, {(1 << bits) - 1}]")
    if codes.shape[dim] % per_word:
        raise ValueError(f"dimension {dim} of size {codes.shape[dim]} is not a multiple of {per_word}")
    moved = codes.movedim(dim, -1).to(torch.int64)
    moved = moved.reshape(*moved.shape[:-1], -1, per_word)  # (..., words, per_word)
    shifts = torch.arange(per_word, dtype=torch.int64) * bits
    words = (moved << shifts).sum(dim=-1)  # < 2^32, as unsigned
    words = torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)  # the same 32 bits, signed
    return words.movedim(-1, dim).contiguous()


def unpack_int32(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Inverse of pack_int32: int32 words -> unsigned codes (int32), 32 // bits per word along dim."""
    bits = check_choice(bits, "bits", GPTQ_PACK_BITS)
    if words.dtype != torch.int32:
        raise ValueError(f"packed words must be int32, got {words.dtype}")
    per_word = 32 // bits
    moved = words.movedim(dim, -1).to(torch.int64) & 0xFFFFFFFF  # (..., words)
    shifts = torch.arange(per_word, dtype=torch.int64) * bits
    codes = (moved.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)  # (..., words, per_word)
    return codes.reshape(*codes.shape[:-2], -1).to(torch.int32).movedim(-1, dim).contiguous()


def _layer_tensors(quantized: QuantizedTensor) -> dict[str, torch.Tensor]:
    scheme = quantized.scheme
    if scheme.granularity != "per_group" or len(quantized.shape) != 2:
        raise ValueError(f"GPTQ checkpoints store 2-D per-group tensors, got {scheme.granularity} "
                         f"of shape {tuple(quantized.shape)}")
    if scheme.zero_point_domain == "float":
        raise ValueError("a float-minimum grid (x = q * scale + min) has no integer zero-point: quantize with "
                         "GPTQConfig(zero_point_domain='int') or a symmetric grid to export a GPTQ checkpoint")
    out_features, in_features = quantized.shape
    bits, group_size = scheme.bits, scheme.group_size
    codes = quantized.codes().to(torch.int32) - scheme.qmin  # (out, in), unsigned 0..2^b - 1
    zeros = quantized.zero_point.reshape(out_features, -1).to(torch.int32) - scheme.qmin  # (out, groups)
    if zeros.min() < 1 or zeros.max() >= 1 << bits:  # stored as zero - 1, which must fit the code width
        raise ValueError(f"zero-points must lie in [1, {(1 << bits) - 1}] to be stored as zero - 1")
    return {"qweight": pack_int32(codes.T, bits, dim=0),  # (in / p, out)
            "qzeros": pack_int32((zeros - 1).T.contiguous(), bits, dim=1),  # (groups, out / p)
            "scales": quantized.scale.reshape(out_features, -1).T.contiguous().half(),  # (groups, out)
            "g_idx": (torch.arange(in_features) // group_size).to(torch.int32)}


def export_gptq_checkpoint(layers: dict[str, QuantizedTensor], path: str | Path) -> dict[str, object]:
    """Write {layer name: quantized weight} as a GPTQ safetensors checkpoint; returns its quantize_config.

    All layers must share bits, group size and symmetry (one quantize_config per checkpoint, as the format has).
    """
    if not layers or not all(isinstance(q, QuantizedTensor) for q in layers.values()):
        raise ValueError("layers must be a non-empty {name: QuantizedTensor} dict (GPTQResult.quantized)")
    schemes = {(q.scheme.bits, q.scheme.group_size, q.scheme.symmetric) for q in layers.values()}
    if len(schemes) != 1:
        raise ValueError(f"all layers must share bits, group size and symmetry, got {sorted(schemes)}")
    bits, group_size, symmetric = schemes.pop()
    check_choice(bits, "bits", GPTQ_PACK_BITS)
    tensors = {f"{name}.{key}": tensor for name, quantized in layers.items()
               for key, tensor in _layer_tensors(quantized).items()}
    config = {"quant_method": "gptq", "checkpoint_format": "gptq", "bits": bits, "group_size": group_size,
              "sym": symmetric, "desc_act": False}
    save_file(tensors, str(path), metadata={"quantize_config": json.dumps(config)})
    return config


def read_gptq_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Dequantized fp32 weights (out, in) of every layer in a GPTQ checkpoint, by layer name."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if "quantize_config" not in metadata:
            raise ValueError(f"{path.name} has no quantize_config metadata: not a GPTQ checkpoint written here")
        config = json.loads(metadata["quantize_config"])
        bits = check_choice(config.get("bits"), "bits", GPTQ_PACK_BITS)
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    weights = {}
    for name in sorted({key.rsplit(".", 1)[0] for key in tensors}):
        try:
            qweight, qzeros = tensors[f"{name}.qweight"], tensors[f"{name}.qzeros"]
            scales, g_idx = tensors[f"{name}.scales"].float(), tensors[f"{name}.g_idx"].long()
        except KeyError as missing:
            raise ValueError(f"{path.name}: layer {name} lacks {missing}") from None
        codes = unpack_int32(qweight, bits, dim=0)  # (in, out)
        zeros = unpack_int32(qzeros, bits, dim=1) + 1  # (groups, out)
        if codes.shape[0] != g_idx.numel() or g_idx.max() >= scales.shape[0] or zeros.shape != scales.shape:
            raise ValueError(f"{path.name}: layer {name} has inconsistent shapes")
        weights[name] = (scales[g_idx] * (codes - zeros[g_idx]).float()).T.contiguous()  # (out, in)
    return weights
