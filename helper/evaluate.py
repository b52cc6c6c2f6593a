"""How much a lower-precision model differs from its reference: logits, embeddings, perplexity. From 02 and 04."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .sizes import tensor_bytes
from .validation import InputTypeError, check_bool, check_int_in_range, check_token_ids

__all__ = ["logit_error", "mean_cosine", "weight_differences", "reference_text", "token_windows", "perplexity",
           "next_token_agreement", "linear_weight_bits", "stdlib_docstring_text"]

STDLIB_DOC_MODULES = ("argparse", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal", "email",
                      "functools", "heapq", "http.client", "inspect", "itertools", "json", "logging", "os",
                      "pathlib", "pickle", "random", "re", "shutil", "socket", "statistics", "string", "subprocess",
                      "tarfile", "textwrap", "threading", "typing", "unittest", "urllib.parse", "zipfile")


def _check_same_shape(reference: torch.Tensor, other: torch.Tensor) -> None:
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: reference {tuple(reference.shape)} vs other {tuple(other.shape)}")
    if reference.numel() == 0:
        raise ValueError("cannot compare empty tensors")


def logit_error(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Mean and max |other - reference|, computed in float32 whatever the inputs' dtypes."""
    _check_same_shape(reference, other)
    difference = (other.float() - reference.float()).abs()
    return {"mean_abs": difference.mean().item(), "max_abs": difference.max().item()}


def mean_cosine(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows (e.g. sentence embeddings), in float32."""
    _check_same_shape(reference, other)
    return F.cosine_similarity(reference.float(), other.float(), dim=-1).mean().item()


def weight_differences(reference: torch.nn.Module, other: torch.nn.Module) -> dict[str, float]:
    """Max |w_other - w_reference| per parameter name, for two copies of the same architecture."""
    other_params = dict(other.named_parameters())
    missing = [name for name, _ in reference.named_parameters() if name not in other_params]
    if missing:
        raise ValueError(f"the models differ in structure: {missing[:3]} missing from the other model")
    return {name: (other_params[name].detach().float() - param.detach().float()).abs().max().item()
            for name, param in reference.named_parameters()}


def _check_windows(model: nn.Module, windows: object) -> torch.Tensor:
    """(n >= 1, 2 <= length <= the model's context) token ids, each below the model's vocabulary size."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[1] < 2:
        shape = tuple(windows.shape) if isinstance(windows, torch.Tensor) else type(windows).__name__
        raise ValueError(f"windows must be (n, length >= 2) token ids, got {shape}")
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    check_token_ids(windows, "windows", getattr(embeddings, "num_embeddings", None))
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and windows.shape[1] > context:
        raise ValueError(f"windows of {windows.shape[1]:,} tokens are longer than the model's context of "
                         f"{context:,} tokens: the perplexity would be measured beyond what it was trained for")
    return windows


def reference_text() -> str:
    """English text every machine has: CPython's pydoc topics (pydoc_data), sorted by key, blank-line joined."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def stdlib_docstring_text() -> str:
    """Another text every machine has (lesson 06's calibration check): the docstrings of 32 stdlib modules
    and of their public classes and functions, in a fixed order, blank-line joined. Not pydoc_data's topics."""
    import importlib
    import inspect

    parts = []
    for module_name in STDLIB_DOC_MODULES:
        module = importlib.import_module(module_name)
        parts.append(inspect.getdoc(module) or "")
        for name in sorted(getattr(module, "__all__", None) or dir(module)):
            member = getattr(module, name, None)
            if not name.startswith("_") and (inspect.isclass(member) or inspect.isfunction(member)):
                parts.append(inspect.getdoc(member) or "")
    return "\n\n".join(dict.fromkeys(p for p in parts if p))  # each docstring once


def token_windows(tokenizer, n_windows: int = 16, window: int = 512, text: str | None = None) -> torch.Tensor:
    """(n_windows, window) token ids: consecutive, non-overlapping windows from the start of the text."""
    check_int_in_range(n_windows, "n_windows")
    check_int_in_range(window, "window")
    if n_windows < 1 or window < 2:
        raise ValueError(f"need n_windows >= 1 and window >= 2, got {n_windows} and {window}")
    ids = tokenizer(reference_text() if text is None else text, return_tensors="pt")["input_ids"][0]
    available = ids.numel() // window
    if n_windows > available:
        raise ValueError(f"the text has {ids.numel():,} tokens: room for {available} windows of {window}, "
                         f"not {n_windows}")
    return ids[: n_windows * window].reshape(n_windows, window)


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 1, progress: bool = False) -> float:
    """exp(mean negative log-likelihood) of every next token in every window (each window on its own)."""
    _check_windows(model, windows)
    batch_size = check_int_in_range(batch_size, "batch_size", 1)
    progress = check_bool(progress, "progress")
    total_nll, total_tokens = 0.0, 0
    batches = range(0, windows.shape[0], batch_size)
    for start in tqdm(batches, desc="perplexity", disable=not progress, leave=False):
        batch = windows[start:start + batch_size]
        logits = model(input_ids=batch).logits.float()  # (batch, length, vocab)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                              reduction="sum")
        total_nll += nll.item()
        total_tokens += batch[:, 1:].numel()
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def next_token_agreement(reference: nn.Module, model: nn.Module, windows: torch.Tensor,
                         progress: bool = False) -> dict[str, float]:
    """Mean KL(reference || model) of next-token distributions (nats) and top-1 agreement, over all positions."""
    _check_windows(reference, windows)
    _check_windows(model, windows)
    total_kl, total_agree, count = 0.0, 0, 0
    for window in tqdm(windows, desc="KL", disable=not progress, leave=False):
        batch = window.unsqueeze(0)
        log_p = F.log_softmax(reference(input_ids=batch).logits.float(), dim=-1)[0]  # (length, vocab)
        log_q = F.log_softmax(model(input_ids=batch).logits.float(), dim=-1)[0]
        total_kl += (log_p.exp() * (log_p - log_q)).sum().item()
        total_agree += (log_p.argmax(-1) == log_q.argmax(-1)).sum().item()
        count += log_p.shape[0]
    return {"kl": total_kl / count, "top1": total_agree / count}


_NOT_WEIGHT = ("bias", "input_scale", "output_scale")  # quanto keeps activation scales on its layers


def linear_weight_bits(model: nn.Module, exclude: tuple[str, ...] = ("lm_head",)) -> dict[str, float]:
    """Bytes and bits per weight of all linear layers' weights (codes + scales + minimums; no biases).

    Works for nn.Linear, optimum-quanto's QLinear (an nn.Linear holding a quantized tensor) and the course's
    quantized layers (anything with in_features and out_features). Tied layers count once.
    """
    total_bytes, total_weights, seen = 0, 0, set()
    for name, module in model.named_modules():
        if not (hasattr(module, "in_features") and hasattr(module, "out_features")):
            continue
        if any(name == p or name.endswith("." + p) for p in exclude) or id(module) in seen:
            continue
        seen.add(id(module))
        for tensor_name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor is not None and tensor_name not in _NOT_WEIGHT:
                total_bytes += tensor_bytes(tensor)
        total_weights += module.in_features * module.out_features
    if total_weights == 0:
        raise ValueError("the model has no linear layers outside the excluded ones")
    return {"bytes": total_bytes, "weights": total_weights, "bits_per_weight": 8 * total_bytes / total_weights}
