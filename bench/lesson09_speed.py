"""make bench: lesson 09's speed and memory table, llama.cpp's perplexity on our GGUF files, optionally batch sizes.

Every variant is measured in a fresh process (helper.deployment.measure_variant): median of 5 runs after a
warm-up, 64-token prompt, 33 new tokens, 2 threads. Then the claims the lesson makes are asserted; the script
exits non-zero, naming the claim, if one no longer holds. Written to bench/results/lesson09_speed.md and .json.

`python bench/lesson09_speed.py --repeats 3 --new-tokens 17 --windows 0` is the quick version (fewer runs, no
perplexity table); `--batches 8` adds a whole-model batch sweep (slow: see --batches). The results file
states which settings made it.
`--render` rewrites the .md and checks the claims from the stored .json without measuring.
"""

import argparse
import json
import os
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


BATCHED = ("fp32", "w4a16", "int8-kernel", "int4-kernel")


def claims(data: dict) -> dict[str, bool]:
    """The orderings lesson 09 states about the whole model, checked on measured data."""
    by_name = {r["variant"]: r for r in data["variants"]}
    decode = {name: r["decode_tokens_per_s"] for name, r in by_name.items()}
    llama = [name for name in decode if name.startswith("llama-")]
    torch_variants = [name for name in decode if name not in llama]
    found = {
        "llama.cpp Q4_0 (our file) decodes faster than our W4A16 (dequantize in Python)":
            decode["llama-q4_0-ours"] > decode["w4a16"],
        "the int4 kernel decodes faster than our W4A16 with the same codes": decode["int4-kernel"] > decode["w4a16"],
        "our W4A16 decodes slower than fp32": decode["w4a16"] < decode["fp32"],
        "every llama.cpp variant decodes faster than every PyTorch variant":
            min(decode[n] for n in llama) > max(decode[n] for n in torch_variants),
        "the same codes give the same tokens (w8a16 / int8 kernel, w4a16 / int4 kernel)":
            by_name["w8a16"]["tokens"] == by_name["int8-kernel"]["tokens"]
            and by_name["w4a16"]["tokens"] == by_name["int4-kernel"]["tokens"],
    }
    if data["perplexity"]:
        found["our Q8_0 file: llama.cpp perplexity within 0.5 % of PyTorch's"] = abs(
            data["perplexity"][0]["difference"]) < 0.005
    return found


def report(data: dict) -> tuple[list[str], list[str]]:
    """The results page (markdown lines) and the claims that failed."""
    settings, rates = data["settings"], data["bandwidth"]
    bandwidth, results = rates["triad"], data["variants"]
    by_name = {r["variant"]: r for r in results}
    lines = ["# Lesson 09: speed and memory of SmolLM2-135M-Instruct on this CPU", "",
             f"{data['machine']}, torch {data['torch']}, {data['threads']} threads; bandwidth (STREAM triad, 256 MB) "
             f"{bandwidth / 1e9:.1f} GB/s, copy {rates['copy'] / 1e9:.1f} GB/s; fp32 matmul 1024^3 "
             f"{data['matmul_flops'] / 1e9:.1f} GFLOP/s. Medians of {settings['repeats']} runs after a warm-up; "
             f"{settings['prompt_tokens']}-token prompt, {settings['new_tokens']} new tokens, batch 1; each variant "
             "in a fresh process." + (f" Load average {data['load_average']:.1f} when it started (the bench "
                                      "itself uses both cores)." if "load_average" in data else ""), "", "```",
             speed_table_text(results, bandwidth), "```"]
    batch_sizes = [int(b) for b in settings["batches"].split(",") if b.strip()]
    if batch_sizes:
        lines += ["", "Decode tokens/s by batch size (median of 3, 8 new tokens):", "", "```"]
        for name in BATCHED:
            lines.append(f"{name:<12} batch 1 {by_name[name]['decode_tokens_per_s']:8.1f}" + "".join(
                f"   batch {b} {data['batches'][f'{name} batch {b}']['decode_tokens_per_s']:8.1f}"
                for b in batch_sizes))
        lines.append("```")
    if data["perplexity"]:
        lines += ["", f"Perplexity, {settings['windows']} windows of 512 tokens, the same ids in both engines:", "",
                  "```"]
        lines += [f"{r['file']:<15} PyTorch {r['pytorch']:.3f}  llama.cpp {r['llama_cpp']:.3f}  "
                  f"difference {r['difference']:+.2%}" for r in data["perplexity"]]
        lines.append("```")
    quantized = [r for r in results if r["variant"] not in ("fp32", "bf16")]
    fastest = max(quantized, key=lambda r: r["decode_tokens_per_s"])
    fraction = fastest["decode_tokens_per_s"] / helper.decode_bound_tokens_per_s(fastest["bytes_per_token"],
                                                                                  bandwidth)
    checked = claims(data)
    lines += ["", f"Fastest quantized variant: {fastest['variant']}, {fraction:.0%} of its bandwidth bound "
              f"(target >= 60 %: {'met' if fraction >= 0.6 else 'missed'}).", "", "Claims the lesson makes:"]
    lines += [f"- {'holds' if ok else 'FAILS'}: {claim}" for claim, ok in checked.items()]
    lines.append(f"\nTotal bench time {data['seconds']:.0f} s.")
    return lines, [claim for claim, ok in checked.items() if not ok]


def measure(args: argparse.Namespace) -> dict:
    """Every measurement of the bench, as the JSON it stores."""
    batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    load_average = os.getloadavg()[0]  # other jobs on the machine slow every timing below
    start = time.perf_counter()
    rates = helper.measure_bandwidth(repeats=7)
    flops = helper.measure_matmul_flops(1024, repeats=7)
    results = [deployment.measure_variant(name, prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens,
                                          repeats=args.repeats) for name in deployment.VARIANTS]
    batches = {f"{name} batch {batch}": deployment.measure_variant(
        name, prompt_tokens=args.prompt_tokens, new_tokens=9, batch=batch, repeats=3)
        for name in BATCHED for batch in batch_sizes}
    ppl = perplexity_rows(args.windows) if args.windows else []
    settings = {k: v for k, v in vars(args).items() if k != "render"}
    return {"settings": settings, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "bandwidth": rates, "matmul_flops": flops, "variants": results,
            "batches": batches, "perplexity": ppl, "seconds": time.perf_counter() - start,
            "load_average": load_average}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median), after a warm-up")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=33)
    # No whole-model batch sweep by default: PyTorch's fused CPU kernels redo their work for every row, so at
    # batch 64 one prefill of 64 tokens takes about half an hour here (2 rows/s measured at batch 1), past
    # measure_variant's 600 s limit. Lesson 09's section 2 sweeps the batch on one matrix instead.
    parser.add_argument("--batches", default="", help='batch sizes of the sweep, comma-separated, e.g. "8,64"')
    parser.add_argument("--windows", type=int, default=16, help="perplexity windows of 512 tokens (0 for none)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite the .md (and check the claims) from the stored .json")
    args = parser.parse_args()
    helper.set_offline()
    helper.quiet_libraries()
    if args.render:
        data = json.loads((RESULTS / "lesson09_speed.json").read_text())
    else:
        data = measure(args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "lesson09_speed.json").write_text(json.dumps(data, indent=1) + "\n")
    lines, failed = report(data)
    (RESULTS / "lesson09_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if failed:
        sys.exit("lesson 09 claims no longer hold: " + "; ".join(failed))


if __name__ == "__main__":
    main()
