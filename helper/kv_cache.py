"""KV-cache quantization (KIVI, Liu et al. 2024): keys per channel, values per token. Taught in 08.

At long context the cache of keys and values, not the weights, fills memory: 2 x layers x KV heads x
head_dim numbers per token. KIVI quantizes keys per *channel* (a few channels carry outliers in every
token, so each channel gets its own range) over groups of G tokens, and values per *token* (the attention
output mixes values across tokens, so per-token error averages out), with asymmetric min-max integers,
and keeps the R most recent tokens in full precision. The simulation below runs the whole sequence in one
forward pass: query i sees the quantized key/value of token j when j lies in a complete group of G tokens
that is more than R tokens old, and the full-precision one otherwise, exactly what a KIVI cache would hold.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .validation import InputTypeError, check_float_tensor, check_int_in_range

__all__ = ["KV_BITS", "fake_quantize_groups", "quantize_keys_per_channel", "quantize_values_per_token",
           "kivi_quantized_length", "kivi_attention", "quantized_kv_cache_bytes", "kv_cache_table",
           "tail_perplexity", "cache_perplexity"]

KV_BITS = (2, 3, 4, 8)
_names = itertools.count()


def fake_quantize_groups(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Asymmetric min-max fake quantization with one (scale, minimum) per slice along dim.

    scale = (max - min) / (2^bits - 1); q = round((x - min) / scale); x_hat = q * scale + min (float32).
    """
    check_float_tensor(x, "x")
    bits = check_int_in_range(bits, "bits", 1, 16)
    x = x.float()
    low, high = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    scale = ((high - low) / (2**bits - 1)).clamp(min=1e-12)
    return torch.clamp(torch.round((x - low) / scale), 0, 2**bits - 1) * scale + low


def _check_kv(x: torch.Tensor, name: str, bits: int, group_size: int, axis_length: int) -> tuple[int, int]:
    check_float_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must be (batch, kv_heads, tokens, head_dim), got shape {tuple(x.shape)}")
    bits = check_int_in_range(bits, "bits", 1, 16)
    if bits not in KV_BITS:
        raise ValueError(f"bits must be one of {KV_BITS}, got {bits}")
    group_size = check_int_in_range(group_size, "group_size", 1, 1 << 20)
    if name == "values" and axis_length % group_size:
        raise ValueError(f"group_size {group_size} does not divide head_dim {axis_length}")
    return bits, group_size


def quantize_keys_per_channel(keys: torch.Tensor, bits: int = 4, group_size: int = 32) -> torch.Tensor:
    """KIVI keys: each channel's own range over each group of group_size consecutive tokens.

    keys: (batch, kv_heads, tokens, head_dim). Tokens past the last complete group stay as they are (in a
    KIVI cache they are still in the full-precision window).
    """
    bits, group_size = _check_kv(keys, "keys", bits, group_size, keys.shape[-2] if keys.dim() == 4 else 0)
    batch, heads, tokens, dim = keys.shape
    full = tokens // group_size * group_size
    out = keys.detach().float().clone()
    if full:
        grouped = out[:, :, :full].reshape(batch, heads, full // group_size, group_size, dim)
        out[:, :, :full] = fake_quantize_groups(grouped, bits, dim=-2).reshape(batch, heads, full, dim)
    return out


def quantize_values_per_token(values: torch.Tensor, bits: int = 4, group_size: int = 32) -> torch.Tensor:
    """KIVI values: each token's own range over each group of group_size channels."""
    bits, group_size = _check_kv(values, "values", bits, group_size, values.shape[-1] if values.dim() == 4 else 0)
    batch, heads, tokens, dim = values.shape
    grouped = values.detach().float().reshape(batch, heads, tokens, dim // group_size, group_size)
    return fake_quantize_groups(grouped, bits, dim=-1).reshape(values.shape)


def kivi_quantized_length(tokens: torch.Tensor | int, group_size: int = 32, residual: int = 128) -> torch.Tensor:
    """How many of the oldest tokens are quantized when the cache holds `tokens` tokens:
    floor((tokens - residual) / group_size) * group_size, at least 0 (so residual to residual + G - 1 stay full)."""
    group_size = check_int_in_range(group_size, "group_size", 1, 1 << 20)
    residual = check_int_in_range(residual, "residual", 0, 1 << 30)
    tokens = torch.as_tensor(tokens)
    return ((tokens - residual).clamp(min=0) // group_size) * group_size


def _kivi_attention_function(bits: int, group_size: int, residual: int):
    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        k_q = quantize_keys_per_channel(key, bits, group_size).to(key.dtype)
        v_q = quantize_values_per_token(value, bits, group_size).to(value.dtype)
        k, k_q = key.repeat_interleave(groups, 1), k_q.repeat_interleave(groups, 1)  # (b, heads, L, d)
        v, v_q = value.repeat_interleave(groups, 1), v_q.repeat_interleave(groups, 1)
        length = query.shape[-2]
        offset = key.shape[-2] - length  # a prefix already cached (0 for a whole-sequence pass)
        positions = torch.arange(length).unsqueeze(1) + offset  # (L, 1) query positions
        keys_at = torch.arange(key.shape[-2]).unsqueeze(0)  # (1, L_k)
        old = keys_at < kivi_quantized_length(positions + 1, group_size, residual)  # (L, L_k)
        scores = torch.where(old, query @ k_q.transpose(-1, -2), query @ k.transpose(-1, -2)) * scaling
        scores = scores.masked_fill(keys_at > positions, -torch.inf)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = (weights * old) @ v_q + (weights * ~old) @ v
        return out.transpose(1, 2).contiguous(), weights
    return attention


@contextlib.contextmanager
def kivi_attention(model: nn.Module, bits: int = 4, group_size: int = 32, residual: int = 128) -> Iterator[nn.Module]:
    """Inside the block, the model's attention reads a KIVI-quantized KV cache (simulated, no padding).

    Registers an attention function with transformers' AttentionInterface and points the model's config at
    it; the previous implementation is restored on exit.
    """
    from transformers import AttentionInterface

    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise InputTypeError(f"model must be a transformers model, got {type(model).__name__}")
    bits = check_int_in_range(bits, "bits", 1, 16)
    if bits not in KV_BITS:
        raise ValueError(f"bits must be one of {KV_BITS}, got {bits}")
    group_size = check_int_in_range(group_size, "group_size", 1, 1 << 20)
    head_dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
    if head_dim % group_size:
        raise ValueError(f"group_size {group_size} does not divide head_dim {head_dim}")
    residual = check_int_in_range(residual, "residual", 0, 1 << 30)
    name = f"kivi_{bits}bit_{next(_names)}"
    AttentionInterface.register(name, _kivi_attention_function(bits, group_size, residual))
    previous = model.config._attn_implementation
    model.config._attn_implementation = name
    try:
        yield model
    finally:
        model.config._attn_implementation = previous


@torch.no_grad()
def tail_perplexity(model: nn.Module, ids: torch.Tensor, start: int) -> float:
    """Perplexity of tokens start+1 .. end of one sequence (1, tokens), from a single forward pass."""
    ids = _check_ids(ids, start)
    logits = model(input_ids=ids).logits[0, start:-1].float()
    return math.exp(F.cross_entropy(logits, ids[0, start + 1:]).item())


@torch.no_grad()
def cache_perplexity(model: nn.Module, ids: torch.Tensor, cache: object, start: int, chunk: int = 128) -> float:
    """The same tokens as tail_perplexity, read through a transformers Cache: the prefix ids[:start + 1]
    fills it, then chunks of `chunk` tokens attend to what the cache returns (e.g. a QuantizedCache)."""
    ids = _check_ids(ids, start)
    chunk = check_int_in_range(chunk, "chunk", 1)
    out = model(input_ids=ids[:, :start + 1], past_key_values=cache, use_cache=True)
    logits = [out.logits[0, -1:]]
    for begin in range(start + 1, ids.shape[1] - 1, chunk):
        out = model(input_ids=ids[:, begin:min(begin + chunk, ids.shape[1] - 1)], past_key_values=cache,
                    use_cache=True)
        logits.append(out.logits[0])
    return math.exp(F.cross_entropy(torch.cat(logits).float(), ids[0, start + 1:]).item())


def _check_ids(ids: object, start: object) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError("ids must be one sequence of token ids, shape (1, tokens)")
    check_int_in_range(start, "start", 0, ids.shape[1] - 2)
    return ids


def quantized_kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, tokens: int, bits: int = 16,
                             group_size: int = 32, residual: int = 128, scale_bits: int = 16) -> float:
    """Bytes of a (KIVI-)quantized cache: codes + one scale and one minimum (scale_bits each) per group,
    the newest `residual` tokens at 16 bits. bits=16 is the plain fp16 cache, 2 x L x H x d x tokens x 2.

    SmolLM2-135M (30 layers, 3 KV heads, 64 dims) holds 23,040 bytes per token in fp16.
    """
    values = [check_int_in_range(v, name, 1, 1 << 40) for v, name in
              ((n_layers, "n_layers"), (n_kv_heads, "n_kv_heads"), (head_dim, "head_dim"), (tokens, "tokens"))]
    bits = check_int_in_range(bits, "bits", 1, 16)
    group_size = check_int_in_range(group_size, "group_size", 1, 1 << 20)
    residual = check_int_in_range(residual, "residual", 0, 1 << 40)
    scale_bits = check_int_in_range(scale_bits, "scale_bits", 0, 32)
    per_token = 2 * values[0] * values[1] * values[2]  # numbers per token: K and V
    if bits == 16:
        return per_token * values[3] * 2.0
    full = min(values[3], residual)
    quantized = values[3] - full
    bits_per_value = bits + 2 * scale_bits / group_size
    return per_token * (quantized * bits_per_value / 8 + full * 2.0)


def kv_cache_table(models: dict[str, tuple[int, int, int, int]], contexts: tuple[int, ...] = (4096, 32768, 131072),
                   bits: tuple[int, ...] = (16, 4, 2)) -> str:
    """Text table of KV-cache GiB per model, context and bits, next to the model's fp16 weights.

    models: name -> (n_layers, n_kv_heads, head_dim, parameters).
    """
    from ._text import text_table

    if not isinstance(models, dict) or not models:
        raise InputTypeError("models must be a non-empty dict name -> (layers, kv_heads, head_dim, parameters)")
    rows = []
    for name, (layers, heads, dim, parameters) in models.items():
        for b in bits:
            row = [name, "fp16" if b == 16 else f"int{b} (KIVI)"]
            row += [f"{quantized_kv_cache_bytes(layers, heads, dim, t, b) / 2**30:,.2f}" for t in contexts]
            row.append(f"{parameters * 2 / 2**30:,.2f}")
            rows.append(row)
    header = ["model", "cache", *[f"{t // 1024}k tokens (GiB)" for t in contexts], "fp16 weights (GiB)"]
    return text_table(header, rows)
