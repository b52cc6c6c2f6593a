"""make bench: lesson 09's speed and memory table, batch sizes, and llama.cpp's perplexity on our GGUF files.

Every variant is measured in a fresh process (helper.deployment.measure_variant): median of 5 runs after a
warm-up, 64-token prompt, 33 new tokens, 2 threads. Then the claims the lesson makes are asserted; the script
exits non-zero, naming the claim, if one no longer holds. Written to bench/results/lesson09_speed.md and .json.
"""

import json
import platform
import sys
import time
from pathlib import Path

import torch

import helper
from helper import deployment
from helper.deployment_plots import speed_table_text

RESULTS = Path(__file__).parent / "results"


def perplexity_rows(n_windows: int = 16) -> list[dict]:
    """Our Q8_0 / Q4_0 files: PyTorch (transformers-dequantized) against llama.cpp, same windows and ids."""
    model, tokenizer = helper.load_smollm2()
    windows = helper.token_windows(tokenizer, n_windows=n_windows, window=512)
    rows = []
    for label, path, torch_model in (
            ("Q8_0 (ours)", helper.our_gguf_path("Q8_0"), None), ("Q4_0 (ours)", helper.our_gguf_path("Q4_0"), None),
            ("Q4_1 (shipped)", helper.smollm2_gguf_path(), model)):
        torch_model = torch_model or helper.load_gguf_model(path)
        ours = helper.perplexity(torch_model, windows)
        theirs = helper.llama_perplexity(helper.load_llama(path, n_ctx=512, logits_all=True), windows)
        rows.append({"file": label, "pytorch": ours, "llama_cpp": theirs, "difference": theirs / ours - 1})
    return rows


def main() -> None:
    helper.set_offline()
    helper.quiet_libraries()
    start = time.perf_counter()
    rates = helper.measure_bandwidth(repeats=7)
    bandwidth = rates["triad"]
    flops = helper.measure_matmul_flops(1024, repeats=7)
    results = [deployment.measure_variant(name, new_tokens=33, repeats=5) for name in deployment.VARIANTS]
    batches = {(name, batch): deployment.measure_variant(name, new_tokens=9, batch=batch, repeats=3)
               for name in ("fp32", "w4a16", "int8-kernel", "int4-kernel") for batch in (8, 64)}
    ppl = perplexity_rows()
    by_name = {r["variant"]: r for r in results}

    lines = [f"# Lesson 09: speed and memory of SmolLM2-135M-Instruct on this CPU", "",
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; bandwidth (STREAM triad, 256 MB) {bandwidth / 1e9:.1f} GB/s, "
             f"copy {rates['copy'] / 1e9:.1f} GB/s; fp32 matmul 1024^3 {flops / 1e9:.1f} GFLOP/s. "
             "Medians of 5 runs after a warm-up; 64-token prompt, 33 new tokens, batch 1; each variant in a fresh "
             "process. Machine shared with other jobs while measured: timings are noisy.", "", "```",
             speed_table_text(results, bandwidth), "```", "",
             "Decode tokens/s by batch size (median of 3, 8 new tokens):", "", "```"]
    for name in ("fp32", "w4a16", "int8-kernel", "int4-kernel"):
        lines.append(f"{name:<12} batch 1 {by_name[name]['decode_tokens_per_s']:8.1f}   "
                     f"batch 8 {batches[(name, 8)]['decode_tokens_per_s']:8.1f}   "
                     f"batch 64 {batches[(name, 64)]['decode_tokens_per_s']:8.1f}")
    lines += ["```", "", "Perplexity, 16 windows of 512 tokens, the same ids in both engines:", "", "```"]
    lines += [f"{r['file']:<15} PyTorch {r['pytorch']:.3f}  llama.cpp {r['llama_cpp']:.3f}  "
              f"difference {r['difference']:+.2%}" for r in ppl]
    lines.append("```")

    quantized = [r for r in results if r["variant"] not in ("fp32", "bf16")]
    fastest = max(quantized, key=lambda r: r["decode_tokens_per_s"])
    fraction = fastest["decode_tokens_per_s"] / helper.decode_bound_tokens_per_s(fastest["bytes_per_token"],
                                                                                  bandwidth)
    claims = {
        "llama.cpp Q4_0 decodes faster than our W4A16 (dequantize in Python)":
            by_name["llama-q4_0-ours"]["decode_tokens_per_s"] > by_name["w4a16"]["decode_tokens_per_s"],
        "the int4 kernel decodes faster than our W4A16 with the same codes":
            by_name["int4-kernel"]["decode_tokens_per_s"] > by_name["w4a16"]["decode_tokens_per_s"],
        "the int8 kernel decodes faster than our W8A16 with the same codes":
            by_name["int8-kernel"]["decode_tokens_per_s"] > by_name["w8a16"]["decode_tokens_per_s"],
        "our W4A16 decodes slower than fp32":
            by_name["w4a16"]["decode_tokens_per_s"] < by_name["fp32"]["decode_tokens_per_s"],
        "the same codes give the same tokens (w8a16 / int8 kernel)":
            by_name["w8a16"]["tokens"] == by_name["int8-kernel"]["tokens"],
        "our Q8_0 and Q4_0 files: llama.cpp perplexity within 0.5 % of PyTorch's":
            all(abs(r["difference"]) < 0.005 for r in ppl[:2]),
    }
    lines += ["", f"Fastest quantized variant: {fastest['variant']}, {fraction:.0%} of its bandwidth bound "
              f"(target >= 60 %: {'met' if fraction >= 0.6 else 'missed'}).", "", "Claims the lesson makes:"]
    lines += [f"- {'holds' if ok else 'FAILS'}: {claim}" for claim, ok in claims.items()]
    lines.append(f"\nTotal bench time {time.perf_counter() - start:.0f} s.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lesson09_speed.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "lesson09_speed.json").write_text(json.dumps(
        {"bandwidth": rates, "matmul_flops": flops, "variants": results,
         "batches": {f"{name} batch {batch}": r for (name, batch), r in batches.items()}, "perplexity": ppl},
        indent=1) + "\n")
    print("\n".join(lines))
    failed = [claim for claim, ok in claims.items() if not ok]
    if failed:
        sys.exit("lesson 09 claims no longer hold: " + "; ".join(failed))


if __name__ == "__main__":
    main()
