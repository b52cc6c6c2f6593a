"""How fast a model can decode on this machine, and how fast it does: bandwidth, roofline, tokens/s. Taught in 09.

Decoding one token multiplies one activation row by every weight matrix, so every weight byte is read
once per token and does 2 FLOPs per weight: arithmetic intensity 2 / bytes-per-weight FLOP/byte, far
left of any CPU's ridge point. Hence the bound: tokens/s <= bandwidth / bytes read per token.
Prefill multiplies `tokens` rows by the same weights: intensity grows with the prompt, and it becomes
compute-bound.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from .validation import check_int_in_range, check_positive

__all__ = ["median_of_runs", "measure_bandwidth", "measure_matmul_flops", "decode_bound_tokens_per_s",
           "arithmetic_intensity", "roofline", "ridge_point", "decode_bytes_per_token", "kv_cache_bytes",
           "greedy_decode_timing", "current_rss_bytes", "peak_rss_bytes", "reset_peak_rss", "release_memory"]


def median_of_runs(measure: Callable[[], float], repeats: int = 3, warmup: int = 1) -> dict[str, object]:
    """Call measure() warmup times (results discarded), then repeats times: {"median", "runs"}.

    measure returns a number, or a dict of numbers (then "median" is a dict: the median of each key).

    The warm-up pays one-off costs (lazy allocations, kernel selection, page faults) that a steady
    state does not; it is never part of the median.
    """
    repeats = check_int_in_range(repeats, "repeats", 3, 1000)  # a median of fewer than 3 is one noisy sample
    warmup = check_int_in_range(warmup, "warmup", 0, 1000)
    if not callable(measure):
        raise TypeError(f"measure must be callable, got {type(measure).__name__}")
    for _ in range(warmup):
        measure()
    runs = [measure() for _ in range(repeats)]
    if all(isinstance(run, dict) for run in runs):  # several quantities per run: a median of each
        return {"median": {key: statistics.median(float(run[key]) for run in runs) for key in runs[0]},
                "runs": runs}
    runs = [float(run) for run in runs]
    return {"median": statistics.median(runs), "runs": runs}


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_bandwidth(n_bytes: int = 256 << 20, repeats: int = 5) -> dict[str, float]:
    """STREAM-style copy (2 x n_bytes moved) and triad a = b + s c (3 x n_bytes), in bytes/s (medians).

    Arrays of n_bytes each, far beyond any cache (256 MB by default), so the rate is DRAM's.
    """
    n_bytes = check_int_in_range(n_bytes, "n_bytes", 1 << 20, 1 << 34)
    n = n_bytes // 4
    a, b, c = torch.zeros(n), torch.ones(n), torch.full((n,), 2.0)
    copy = median_of_runs(lambda: _timed(lambda: a.copy_(b)), repeats)["median"]
    triad = median_of_runs(lambda: _timed(lambda: torch.add(b, c, alpha=3.0, out=a)), repeats)["median"]
    return {"copy": 2 * n * 4 / copy, "triad": 3 * n * 4 / triad}


def measure_matmul_flops(size: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """FLOP/s of a (size x size) @ (size x size) matmul: 2 size^3 FLOPs per call (median)."""
    size = check_int_in_range(size, "size", 16, 16384)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    seconds = median_of_runs(lambda: _timed(lambda: a @ b), repeats)["median"]
    return 2 * size ** 3 / seconds


def decode_bound_tokens_per_s(bytes_per_token: float, bandwidth: float) -> float:
    """The bandwidth bound of decoding: bandwidth (bytes/s) / bytes read per token.

    Example: 100 MB of weights at 10 GB/s cannot decode faster than 100 tokens/s.
    """
    return check_positive(bandwidth, "bandwidth") / check_positive(bytes_per_token, "bytes_per_token")


def arithmetic_intensity(tokens: int, bytes_per_weight: float) -> float:
    """FLOPs per byte of weight read for `tokens` rows through a weight matrix: 2 tokens / bytes_per_weight.

    Activations are ignored (they are small next to the weights for short prompts).
    """
    tokens = check_int_in_range(tokens, "tokens", 1)
    return 2 * tokens / check_positive(bytes_per_weight, "bytes_per_weight")


def roofline(intensity: float | torch.Tensor, peak_flops: float, bandwidth: float) -> float | torch.Tensor:
    """Attainable FLOP/s = min(peak_flops, intensity x bandwidth)."""
    check_positive(peak_flops, "peak_flops")
    check_positive(bandwidth, "bandwidth")
    if isinstance(intensity, torch.Tensor):
        return torch.clamp(intensity * bandwidth, max=peak_flops)
    return min(peak_flops, check_positive(intensity, "intensity") * bandwidth)


def ridge_point(peak_flops: float, bandwidth: float) -> float:
    """The intensity (FLOP/byte) where the roofline turns flat: peak_flops / bandwidth."""
    return check_positive(peak_flops, "peak_flops") / check_positive(bandwidth, "bandwidth")


_MATMUL_BUFFERS = ("weight", "int8_weights", "packed_weights", "scales", "minimums", "scales_and_zeros")


def decode_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoded token reads: every matmul's weight tensors (codes, scales), tied ones once.

    An embedding is only indexed (one row per token), so it does not count, unless it is also the output
    layer (tied lm_head), which reads all of it.
    """
    seen, total = set(), 0
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            continue
        for name in _MATMUL_BUFFERS:
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor) and tensor.data_ptr() not in seen and (
                    name != "weight" or tensor.dim() == 2):
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    if total == 0:
        raise ValueError("the model has no matmul weights")
    return total


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, tokens: int, bytes_per_value: int = 4) -> int:
    """K and V of every layer for `tokens` positions: 2 x layers x kv_heads x head_dim x tokens x bytes."""
    values = [check_int_in_range(v, name, 1) for v, name in
              ((n_layers, "n_layers"), (n_kv_heads, "n_kv_heads"), (head_dim, "head_dim"), (tokens, "tokens"))]
    return 2 * values[0] * values[1] * values[2] * values[3] * check_int_in_range(bytes_per_value, "bytes_per_value", 1)


@torch.no_grad()
def greedy_decode_timing(model: nn.Module, input_ids: torch.Tensor, new_tokens: int) -> dict[str, object]:
    """One greedy generation with the KV cache, timed in two parts: prefill (the prompt in one forward)
    and decode (each next token alone). Returns seconds and tokens/s of each, and the tokens.

    tokens/s counts every row of the batch: batch x prompt / prefill time, batch x (new - 1) / decode time.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError("input_ids must be (batch, prompt) token ids of dtype long")
    new_tokens = check_int_in_range(new_tokens, "new_tokens", 2, 100_000)
    start = time.perf_counter()
    output = model(input_ids=input_ids, use_cache=True)
    token = output.logits[:, -1].argmax(-1, keepdim=True)  # (batch, 1)
    prefill = time.perf_counter() - start
    past, tokens = output.past_key_values, [token]
    start = time.perf_counter()
    for _ in range(new_tokens - 1):
        output = model(input_ids=token, past_key_values=past, use_cache=True)
        past, token = output.past_key_values, output.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(token)
    decode = time.perf_counter() - start
    batch, prompt = input_ids.shape
    return {"prefill_s": prefill, "decode_s": decode, "prefill_tokens_per_s": batch * prompt / prefill,
            "decode_tokens_per_s": batch * (new_tokens - 1) / decode, "tokens": torch.cat(tokens, dim=1)}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field} (peak memory needs Linux)")


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux VmRSS)."""
    return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or the last reset_peak_rss() (Linux VmHWM)."""
    return _status_kb("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Set the peak back to the current resident memory (writes 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def release_memory() -> None:
    """Hand freed heap pages back to the system (gc, then glibc malloc_trim), so RSS shows what is still held."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: nothing to trim
        pass
