"""Our GGUF files in llama.cpp, the engine people deploy with: load, generate, perplexity, tokens/s. Taught in 09.

llama.cpp reads the packed blocks (Q8_0, Q4_0, Q4_1, k-quants) straight from the memory-mapped file
inside its matmul kernels: nothing is dequantized to a float weight. Its Python bindings
(llama-cpp-python) are built from source once by `make setup` (see the README for the time it takes).
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .gguf_io import read_gguf, write_gguf
from .models import cache_dir, smollm2_gguf_path
from .validation import check_choice, check_int_in_range

__all__ = ["LLAMA_CPP_VERSION", "LLAMA_CPP_INSTALL", "LlamaCppMissing", "require_llama_cpp", "load_llama",
           "llama_greedy", "llama_perplexity", "our_gguf_path", "llama_quantize", "llama_decode_timing"]

LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_INSTALL = (f"make setup   (builds llama-cpp-python=={LLAMA_CPP_VERSION} from source once into "
                     f"~/.cache/quantization-fundamentals/wheels; by hand: pip install llama-cpp-python=={LLAMA_CPP_VERSION})")
_QUANTIZE_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}  # llama_ftype


class LlamaCppMissing(ImportError):
    """llama.cpp's Python bindings are not installed; the message says how to install them."""


def require_llama_cpp() -> ModuleType:
    """The llama_cpp module, or LlamaCppMissing naming the command that installs it."""
    try:
        import llama_cpp
    except ImportError as error:
        raise LlamaCppMissing(f"llama.cpp's Python bindings are not installed ({error}). Install them with:\n"
                              f"    {LLAMA_CPP_INSTALL}") from None
    return llama_cpp


def load_llama(path: str | Path, n_ctx: int = 512, n_threads: int = 2, logits_all: bool = False) -> Any:
    """A llama_cpp.Llama on a GGUF file (memory-mapped, CPU, quiet). logits_all keeps every position's logits."""
    llama_cpp = require_llama_cpp()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    n_ctx = check_int_in_range(n_ctx, "n_ctx", 8, 8192)
    n_threads = check_int_in_range(n_threads, "n_threads", 1, 256)
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=n_threads,
                           n_threads_batch=n_threads, logits_all=bool(logits_all), seed=0, verbose=False)


def _last_logits(llm: Any) -> np.ndarray:
    """Logits of the last evaluated position, (vocab,), read from the context (no copy of a full table)."""
    llama_cpp = require_llama_cpp()
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),))


def llama_greedy(llm: Any, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Greedy continuation (argmax of llama.cpp's logits at every step) of a prompt given as token ids."""
    new_tokens = check_int_in_range(new_tokens, "new_tokens", 1, 100_000)
    if not prompt_ids:
        raise ValueError("prompt_ids must hold at least one token id")
    llm.reset()
    llm.eval(list(prompt_ids))
    tokens = []
    for _ in range(new_tokens):
        token = int(np.argmax(_last_logits(llm)))
        tokens.append(token)
        llm.eval([token])
    return tokens


def llama_decode_timing(llm: Any, prompt_ids: list[int], new_tokens: int) -> dict[str, object]:
    """Prefill (the prompt in one batch) and decode (one token at a time, greedy) timed as greedy_decode_timing."""
    new_tokens = check_int_in_range(new_tokens, "new_tokens", 2, 100_000)
    llm.reset()
    start = time.perf_counter()
    llm.eval(list(prompt_ids))
    token = int(np.argmax(_last_logits(llm)))
    prefill = time.perf_counter() - start
    tokens = [token]
    start = time.perf_counter()
    for _ in range(new_tokens - 1):
        llm.eval([token])
        token = int(np.argmax(_last_logits(llm)))
        tokens.append(token)
    decode = time.perf_counter() - start
    return {"prefill_s": prefill, "decode_s": decode, "prefill_tokens_per_s": len(prompt_ids) / prefill,
            "decode_tokens_per_s": (new_tokens - 1) / decode, "tokens": tokens}


def llama_perplexity(llm: Any, windows: torch.Tensor) -> float:
    """exp(mean NLL) of every next token in every window, from llama.cpp's logits (a logits_all Llama).

    The same token ids and the same formula as helper.perplexity, so the two are directly comparable.
    """
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError("windows must be (n, length >= 2) token ids")
    if windows.shape[1] > llm.n_ctx():
        raise ValueError(f"windows of {windows.shape[1]} tokens do not fit the context of {llm.n_ctx()}")
    if not llm._logits_all:
        raise ValueError("load the model with load_llama(..., logits_all=True) to read every position's logits")
    total_nll, count = 0.0, 0
    for window in windows.tolist():
        llm.reset()
        llm.eval(window)
        logits = torch.from_numpy(np.array(llm.scores[: len(window)], dtype=np.float32))  # (length, vocab)
        nll = torch.nn.functional.cross_entropy(logits[:-1].double(), torch.tensor(window[1:]), reduction="sum")
        total_nll += nll.item()
        count += len(window) - 1
    return math.exp(total_nll / count)


def our_gguf_path(type_name: str = "Q8_0") -> Path:
    """SmolLM2 re-quantized by our own Q8_0 / Q4_0 block quantizers (lesson 05) into a GGUF file, written once."""
    type_name = check_choice(type_name, "type_name", ("Q8_0", "Q4_0"))
    path = cache_dir() / "gguf" / f"SmolLM2-135M-Instruct.{type_name}.ours.gguf"
    if not path.is_file():
        work = path.with_suffix(".tmp")
        write_gguf(smollm2_gguf_path(), work, type_name)
        read_gguf(work)  # our reader accepts it before it takes the final name
        work.rename(path)
    return path


def llama_quantize(source: str | Path, destination: str | Path, type_name: str = "Q4_K_M", n_threads: int = 2) -> Path:
    """llama.cpp's own quantizer (llama_model_quantize) from a GGUF file to type_name, requantizing if needed."""
    llama_cpp = require_llama_cpp()
    type_name = check_choice(type_name, "type_name", tuple(_QUANTIZE_TYPES))
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise FileNotFoundError(f"no GGUF file at {source}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _QUANTIZE_TYPES[type_name]
    params.nthread = check_int_in_range(n_threads, "n_threads", 1, 256)
    params.allow_requantize = True  # the shipped file is already Q4_1: dequantized, then quantized again
    # The bindings map llama.cpp's per-tensor fallback warnings to ERROR and print hundreds of lines; the
    # result says the same in its tensor types (read_gguf), so they are silenced while it quantizes.
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(destination).encode(),
                                                ctypes.byref(params))
    finally:
        logger.setLevel(level)
    if status != 0:
        raise RuntimeError(f"llama_model_quantize({source.name} -> {type_name}) failed with status {status}")
    return destination
