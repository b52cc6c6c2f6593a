"""make bench: lesson 08's numbers on SmolLM2-135M-Instruct, at the bench's size.

Weight formats at their real bits/weight on 4 x 512 tokens (the notebook: 1 window); KIVI KV caches and
transformers' QuantizedCache (quanto) on the last 1,024 of 2,048 tokens, and greedy generation agreement.
Written to bench/results/lesson08_formats.md and .json. Run with nice -n 10 on a shared machine.
"""

import json
import time
from pathlib import Path

import torch
from transformers import DynamicCache, QuantizedCache

import helper

RESULTS = Path(__file__).resolve().parent / "results"


def weight_rows(model, windows) -> list[dict]:
    """Perplexity of every lesson 08 weight format and the two W8A8 simulations."""
    rows = [{"format": "fp32", "perplexity": helper.perplexity(model, windows), "bits_per_weight": 32.0}]
    for name, convert in (("W8A8 int8 (per token)", helper.w8a8_model),
                          ("W8A8 FP8 E4M3 (per token)", helper.w8a8_fp8_model)):
        rows.append({"format": name, "perplexity": helper.perplexity(convert(helper.load_smollm2()[0]), windows),
                     "bits_per_weight": 8.0})
    for fmt in helper.LESSON_08_FORMATS:
        quantized, bits = helper.apply_weight_format(model, fmt)
        rows.append({"format": fmt, "perplexity": helper.perplexity(quantized, windows), "bits_per_weight": bits})
        print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def kv_rows(model, ids, start: int) -> list[dict]:
    """Ours (single pass) and quanto's QuantizedCache (chunks of 128) on the same tail tokens."""
    config = model.config
    reference = model(input_ids=ids).logits[0, start:-1].argmax(-1)
    rows = [{"cache": "fp32 (single pass)", "perplexity": helper.tail_perplexity(model, ids, start), "top1": 1.0}]
    rows.append({"cache": "fp32 DynamicCache, chunks of 128",
                 "perplexity": helper.cache_perplexity(model, ids, DynamicCache(config=config), start)})
    for bits in (8, 4, 2):
        with helper.kivi_attention(model, bits, group_size=32, residual=128):
            logits = model(input_ids=ids).logits[0, start:-1]
            agreement = (logits.argmax(-1) == reference).float().mean().item()
            rows.append({"cache": f"KIVI int{bits} (ours, G=32, R=128)",
                         "perplexity": helper.tail_perplexity(model, ids, start), "top1": agreement})
        print(rows[-1], flush=True)
    for bits in (4, 2):
        cache = QuantizedCache(backend="quanto", config=config, nbits=bits, q_group_size=64, residual_length=128)
        rows.append({"cache": f"quanto int{bits} QuantizedCache (G=64, R=128)",
                     "perplexity": helper.cache_perplexity(model, ids, cache, start)})
        print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def generation_rows(model, ids, new_tokens: int = 32) -> list[dict]:
    """Greedy continuations of a 1,024-token prompt: how many tokens match the fp32 cache's, in order."""
    config = model.config
    prompt = ids[:, :1024]
    reference = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                               past_key_values=DynamicCache(config=config))[0, 1024:]
    rows = []
    for bits in (4, 2):
        cache = QuantizedCache(backend="quanto", config=config, nbits=bits, q_group_size=64, residual_length=128)
        out = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, past_key_values=cache)[0, 1024:]
        same = int((out == reference).long().cumprod(0).sum())
        rows.append({"cache": f"quanto int{bits}", "same_prefix": same, "same_anywhere": int((out == reference).sum()),
                     "new_tokens": new_tokens})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    helper.set_offline()
    helper.quiet_libraries()
    torch.manual_seed(0)
    begin = time.perf_counter()
    model, tokenizer = helper.load_smollm2()
    windows = helper.token_windows(tokenizer, n_windows=4, window=512)
    long_ids = helper.token_windows(tokenizer, n_windows=1, window=2048)
    results = {"weights": weight_rows(model, windows), "kv": kv_rows(model, long_ids, 1024),
               "generation": generation_rows(model, long_ids)}
    results["seconds"] = time.perf_counter() - begin
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lesson08_formats.json").write_text(json.dumps(results, indent=1))
    fp32 = results["weights"][0]["perplexity"]
    lines = ["# Lesson 08: new formats on SmolLM2-135M-Instruct (make bench)", "",
             "Weights: every linear layer but lm_head, round to nearest; perplexity on 4 windows of 512 tokens "
             "(pydoc topics). Bits/weight count codes and scales as each format stores them.", "", "```",
             f"{'format':<28}{'perplexity':>11}{'vs fp32':>9}{'bits/weight':>13}"]
    for row in results["weights"]:
        lines.append(f"{row['format']:<28}{row['perplexity']:>11.2f}{row['perplexity'] / fp32 - 1:>+9.1%}"
                     f"{row['bits_per_weight']:>13.3f}")
    lines += ["```", "", "KV cache: perplexity of tokens 1,025-2,047 of one 2,048-token window; top-1 = agreement "
              "of the next-token argmax with the fp32 cache (teacher-forced).", "", "```"]
    for row in results["kv"]:
        top1 = f"{row['top1']:.3f}" if "top1" in row else "-"
        lines.append(f"{row['cache']:<44}{row['perplexity']:>8.2f}   top-1 {top1}")
    lines += ["```", "", "Greedy generation, 32 new tokens after a 1,024-token prompt, against the fp32 cache:", ""]
    for row in results["generation"]:
        lines.append(f"- {row['cache']}: first {row['same_prefix']} tokens identical, {row['same_anywhere']} of "
                     f"{row['new_tokens']} equal position by position")
    lines += ["", f"Took {results['seconds'] / 60:.0f} min here."]
    (RESULTS / "lesson08_formats.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
