"""SmolLM2 in every form lesson 09 compares, each measured in a fresh process: tokens/s and peak memory.

`measure_variant("w4a16")` runs `python -m helper.deployment w4a16` in a new interpreter, so one
variant's allocations never inflate another's peak. The child imports everything first (its baseline
memory), builds the variant, frees what building it needed, resets the peak, then times greedy
generation (median of `repeats` runs after a warm-up) and reports the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from .kernels import to_fused_kernels
from .layers import W4A16Linear, W8A16Linear, replace_linear
from .validation import check_int_in_range
from .speed import (current_rss_bytes, decode_bytes_per_token, greedy_decode_timing, kv_cache_bytes, median_of_runs,
                    peak_rss_bytes, release_memory, reset_peak_rss)

__all__ = ["VARIANTS", "TORCH_VARIANTS", "LLAMA_CPP_VARIANTS", "smollm2_folder", "prompt_ids",
           "build_torch_variant", "run_variant", "measure_variant"]

TORCH_VARIANTS = {
    "fp32": "PyTorch fp32",
    "bf16": "PyTorch bf16",
    "w8a16": "our W8A16Linear (dequantize in Python)",
    "w4a16": "our W4A16Linear g64 (dequantize in Python)",
    "int8-kernel": "int8 weight-only kernel (torch._weight_int8pack_mm)",
    "int4-kernel": "int4 weight-only kernel g64 (_weight_int4pack_mm_for_cpu)",
}
LLAMA_CPP_VARIANTS = {
    "llama-q8_0-ours": "llama.cpp, our Q8_0 file",
    "llama-q4_0-ours": "llama.cpp, our Q4_0 file",
    "llama-q4_1": "llama.cpp, the shipped Q4_1 file",
    "llama-q4_k_m": "llama.cpp, its own Q4_K_M",
}
VARIANTS = {**TORCH_VARIANTS, **LLAMA_CPP_VARIANTS}
_SMOLLM2_KV = dict(n_layers=30, n_kv_heads=3, head_dim=64)  # from its config (tested in test_deployment)


def smollm2_folder() -> Path:
    """The course's SmolLM2 as a local transformers folder (fp32 safetensors, converted once), for
    from_pretrained(folder, quantization_config=...)."""
    from .models import _smollm2_folder

    return _smollm2_folder()


def prompt_ids(tokens: int = 64, batch: int = 1) -> torch.Tensor:
    """(batch, tokens) ids: the first tokens of the course's evaluation text, the same in every variant."""
    from transformers import AutoTokenizer

    from .evaluate import reference_text

    tokens = check_int_in_range(tokens, "tokens", 1, 4096)
    batch = check_int_in_range(batch, "batch", 1, 1024)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder(), local_files_only=True)
    ids = tokenizer(reference_text()[:20_000], return_tensors="pt")["input_ids"][0, :tokens]
    return ids.unsqueeze(0).repeat(batch, 1)


def build_torch_variant(name: str) -> torch.nn.Module:
    """SmolLM2 as the named PyTorch variant (lm_head stays in the model's dtype, as in lessons 04-06)."""
    from .models import load_smollm2

    if name not in TORCH_VARIANTS:
        raise ValueError(f"unknown PyTorch variant {name!r}; known: {', '.join(TORCH_VARIANTS)}")
    model, _ = load_smollm2(torch.bfloat16 if name == "bf16" else torch.float32)
    if name in ("w8a16", "int8-kernel"):
        replace_linear(model, W8A16Linear)
    elif name in ("w4a16", "int4-kernel"):
        replace_linear(model, W4A16Linear, group_size=64)
    if name.endswith("-kernel"):
        to_fused_kernels(model)
    # from_pretrained memory-maps the fp32 checkpoint: any tensor still viewing the file (the tied embedding,
    # the norms) keeps the whole mapping alive, and with it every page that building the variant touched.
    # Copies of what the variant keeps let the mapping go, so resident memory is the variant's own.
    for tensor in {id(t): t for t in [*model.parameters(), *model.buffers()]}.values():
        tensor.data = tensor.data.clone()
    return model


def _llama_path(name: str) -> Path:
    from .llama_cpp import llama_quantize, our_gguf_path
    from .models import cache_dir, smollm2_gguf_path

    if name == "llama-q4_1":
        return smollm2_gguf_path()
    if name == "llama-q4_k_m":
        path = cache_dir() / "gguf" / "SmolLM2-135M-Instruct.Q4_K_M.llama.gguf"
        return path if path.is_file() else llama_quantize(smollm2_gguf_path(), path, "Q4_K_M")
    return our_gguf_path("Q8_0" if name == "llama-q8_0-ours" else "Q4_0")


def run_variant(name: str, prompt_tokens: int = 64, new_tokens: int = 17, batch: int = 1,
                repeats: int = 3) -> dict[str, object]:
    """Build one variant in this process and measure it: median prefill/decode tokens/s, memory, bytes/token."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    ids = prompt_ids(prompt_tokens, batch)
    release_memory()
    baseline = current_rss_bytes()
    if name in TORCH_VARIANTS:
        model = build_torch_variant(name)
        weights = sum(t.numel() * t.element_size() for t in {id(t): t for t in
                      [*model.parameters(), *model.buffers()]}.values())
        per_token = decode_bytes_per_token(model)
        kv_bytes = 2 if name == "bf16" else 4
        kv = kv_cache_bytes(**_SMOLLM2_KV, tokens=batch * (prompt_tokens + new_tokens), bytes_per_value=kv_bytes)
        measure = lambda: greedy_decode_timing(model, ids, new_tokens)  # noqa: E731
    else:
        from .gguf_io import read_gguf
        from .llama_cpp import llama_decode_timing, load_llama

        if batch != 1:
            raise ValueError("the llama.cpp variants decode one sequence (batch 1)")
        path = _llama_path(name)
        weights = per_token = read_gguf(path).file_size  # every tensor is read once per token (tied output)
        model = load_llama(path, n_ctx=prompt_tokens + new_tokens + 16)
        kv = kv_cache_bytes(**_SMOLLM2_KV, tokens=model.n_ctx(), bytes_per_value=2)  # f16 K and V
        prompt = ids[0].tolist()
        measure = lambda: llama_decode_timing(model, prompt, new_tokens)  # noqa: E731
    release_memory()
    loaded = current_rss_bytes()
    reset_peak_rss()
    runs = []
    median = median_of_runs(lambda: runs.append(measure()) or {k: v for k, v in runs[-1].items() if k != "tokens"},
                            repeats=repeats)["median"]
    peak = peak_rss_bytes()
    return {"variant": name, "label": VARIANTS[name], "batch": batch, "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens, "repeats": repeats, "threads": torch.get_num_threads(),
            "prefill_tokens_per_s": median["prefill_tokens_per_s"], "decode_tokens_per_s": median["decode_tokens_per_s"],
            "bytes_per_token": per_token, "weight_bytes": weights, "kv_cache_bytes": kv,
            "baseline_rss": baseline, "loaded_rss": loaded, "peak_rss": peak,
            "tokens": [int(t) for t in torch.as_tensor(runs[-1]["tokens"]).reshape(batch, -1)[0]]}


def measure_variant(name: str, prompt_tokens: int = 64, new_tokens: int = 17, batch: int = 1,
                    repeats: int = 3, timeout: float = 600) -> dict[str, object]:
    """run_variant in a fresh Python process (same threads as this one), its result read back as JSON."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    command = [sys.executable, "-m", "helper.deployment", name, "--prompt-tokens", str(prompt_tokens),
               "--new-tokens", str(new_tokens), "--batch", str(batch), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main() -> None:
    parser = argparse.ArgumentParser(description="Measure one SmolLM2 variant; prints one JSON line.")
    parser.add_argument("variant", choices=list(VARIANTS))
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=17)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from .notebook import quiet_libraries, set_offline

    set_offline()
    quiet_libraries()
    print(json.dumps(run_variant(args.variant, args.prompt_tokens, args.new_tokens, args.batch, args.repeats)))


if __name__ == "__main__":
    _main()
