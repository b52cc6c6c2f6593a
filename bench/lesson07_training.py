"""make bench: lesson 07's training table on SmolLM2-135M-Instruct (QAT, learned scales, QLoRA), long version.

Evaluation: the first --eval-windows windows of 512 tokens of CPython's pydoc topics (lesson 06's evaluation
windows). Training / calibration: windows of 128 tokens from token 16 x 512 = 8,192 on, after every lesson-06
evaluation window: disjoint. Every int4 row stores 4-bit codes, an fp16 scale and a 4-bit zero-point per group
of 128 (96 where 128 does not divide 576). Writes bench/results/lesson07_training.{json,md}.

    python bench/lesson07_training.py                        # the default (long) configuration
    python bench/lesson07_training.py --steps 20 --eval-windows 4   # a shorter one
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import helper

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps of each trained run")
    parser.add_argument("--eval-windows", type=int, default=16, help="evaluation windows of 512 tokens")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--scale-steps", type=int, default=40, help="steps per block for the learned scales")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the stored .json only")
    args = parser.parse_args()
    if args.render:
        payload = json.loads((RESULTS / "lesson07_training.json").read_text())
        (RESULTS / "lesson07_training.md").write_text(_markdown(payload))
        return
    helper.set_up_notebook(threads=1)  # as the notebook: many small ops, a busy second core makes them wait
    model, tokenizer = helper.load_smollm2()
    evaluation = helper.token_windows(tokenizer, n_windows=args.eval_windows, window=512)
    training = helper.token_windows(tokenizer, n_windows=64 + 2 * args.steps, window=128)[64:]

    def evaluate(m):
        return helper.perplexity(m, evaluation, batch_size=4)

    rows, curves = [], {}

    def row(name, ppl, bits, steps, seconds):
        rows.append({"name": name, "perplexity": ppl, "bits_per_weight": bits, "steps": steps,
                     "cpu_seconds": seconds})
        print(f"{name:40} {ppl:8.2f} {bits:6.3f} b/w {steps:4d} steps {seconds:7.0f} s CPU", flush=True)

    clock = time.process_time
    t = clock()
    row("fp32", evaluate(model), 32.0, 0, clock() - t)
    t = clock()
    rtn = helper.to_qat(model)
    bits = helper.qat_bits_per_weight(rtn)
    row("RTN int4 asym g128", evaluate(helper.freeze_qat(rtn)), bits, 0, clock() - t)
    t = clock()
    gptq_config = helper.GPTQConfig(bits=4, group_size=128, symmetric=False, zero_point_domain="int",
                                    scale_bits=16, act_order=True)
    gptq_model = copy.deepcopy(model)
    gptq_results = helper.gptq_quantize_model(gptq_model, training[:16], gptq_config)
    row("GPTQ int4 asym act-order g128", evaluate(gptq_model), bits, 0, clock() - t)
    del gptq_model

    def frozen_eval(m):
        return evaluate(helper.freeze_qat(m))

    for name, student in (("QAT (distilled) from RTN", rtn), ("QAT (distilled) from GPTQ",
                                                               helper.to_qat(model, gptq_results))):
        t = clock()
        history = helper.train_distilled(student, model, training, steps=args.steps, lr=1e-5, scale_lr=1e-3,
                                         batch_size=args.batch, evaluate=frozen_eval, eval_every=args.eval_every)
        curves[name] = history
        row(name, history["eval"][-1][1], bits, args.steps, clock() - t)
        del student
    t = clock()
    scales = helper.to_qat(model, train_weight=False)
    helper.learn_scales_blockwise(scales, model, training[:16], steps=args.scale_steps, lr=5e-3, batch_size=4)
    row("learned scales block-wise (from RTN)", frozen_eval(scales), bits, args.scale_steps, clock() - t)
    del scales
    for base in ("nf4", "fp32"):
        t = clock()
        lora = helper.add_lora(model, rank=8, alpha=16, base=base)
        history = helper.train_lora(lora, training, steps=args.steps, lr=1e-3, batch_size=args.batch,
                                    evaluate=evaluate, eval_every=args.eval_every)
        curves[f"{base} + LoRA"] = history
        bits_base = helper.codebook_bits_per_parameter(4, 64, True) if base == "nf4" else 32.0
        row(f"{base} base, untuned", history["eval"][0][1], bits_base, 0, 0.0)
        row(f"{base} base + LoRA r8", history["eval"][-1][1], bits_base, args.steps, clock() - t)
        if base == "nf4":
            t = clock()
            row("NF4 + LoRA merged, re-quantized to NF4",
                evaluate(helper.merge_lora_model(lora, requantize=True)), bits_base, args.steps, clock() - t)
        del lora
    peak = _peak_rss_of_training()
    RESULTS.mkdir(exist_ok=True)
    payload = {"config": vars(args), "rows": rows, "curves": curves, "peak_rss": peak}
    (RESULTS / "lesson07_training.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / "lesson07_training.md").write_text(_markdown(payload))
    print(_markdown(payload))


PEAK_SCRIPT = """
import sys, helper
from helper.speed import current_rss_bytes, peak_rss_bytes, release_memory, reset_peak_rss
helper.set_up_notebook(threads=1)
model, tokenizer = helper.load_smollm2()
base, checkpointing = sys.argv[1], sys.argv[2] == "1"
lora = helper.add_lora(model, rank=8, alpha=16, base=base)
del model
if checkpointing:
    lora.gradient_checkpointing_enable()
    lora.config.use_cache = False
ids = helper.token_windows(tokenizer, n_windows=2, window=512)
release_memory()
before = current_rss_bytes()
reset_peak_rss()  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec from the (large) parent
helper.train_lora(lora, ids, steps=1, batch_size=2)
print(before, peak_rss_bytes())
"""


def _peak_rss_of_training() -> dict[str, list[int]]:
    """Resident memory (bytes) before one LoRA step on 2 x 512 tokens and its peak during the step, fresh process."""
    peaks = {}
    # Big allocations straight from mmap, so freed ones go back at once: the NF4 step dequantizes every weight
    # twice, and glibc's heap would otherwise keep those temporaries' pages (2.73 -> 3.81 GB measured here).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for base in ("nf4", "fp32"):
        for checkpointing in ("0", "1"):
            out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, base, checkpointing], capture_output=True,
                                 text=True, check=True, env=env).stdout.split()
            peaks[f"{base}, checkpointing={checkpointing == '1'}"] = [int(out[-2]), int(out[-1])]
    return peaks


def _markdown(payload: dict) -> str:
    config = payload["config"]
    lines = ["# Lesson 07: training through quantization (SmolLM2-135M-Instruct)", "",
             f"Evaluation: {config['eval_windows']} windows of 512 tokens (pydoc topics, from token 0). Training: "
             f"windows of 128 tokens from token 8,192 on, batches of {config['batch']}, each window seen once; GPTQ "
             "and the learned scales calibrate on the first 16 of them. CPU seconds: process time on one thread "
             "(as the notebook) of a shared 2-core machine; each run's includes its evaluations.", "", "```",
             f"{'run':40} {'perplexity':>10} {'vs fp32':>8} {'bits/weight':>11} {'steps':>5} {'CPU s':>7}"]
    fp32 = payload["rows"][0]["perplexity"]
    for r in payload["rows"]:
        lines.append(f"{r['name']:40} {r['perplexity']:10.2f} {r['perplexity'] / fp32 - 1:+8.1%} "
                     f"{r['bits_per_weight']:11.3f} {r['steps']:5d} {r['cpu_seconds']:7.0f}")
    by_name = {r["name"]: r["perplexity"] for r in payload["rows"]}
    qat = min(v for k, v in by_name.items() if k.startswith("QAT"))
    gap = by_name["nf4 base + LoRA r8"] / by_name["fp32 base + LoRA r8"] - 1
    lines += ["```", "", "Targets (issue 17):", "",
              f"- best QAT (distilled) int4 g128 within +5 % of fp32: {qat:.2f}, {qat / fp32 - 1:+.1%} "
              f"({'met' if qat <= 1.05 * fp32 else 'missed'})",
              f"- NF4 + LoRA within 2 % of fp32 + LoRA after the same steps: {gap:+.1%} "
              f"({'met' if gap <= 0.02 else 'missed'})",
              f"- both LoRA runs better than their untuned base on held-out text: "
              f"{'yes' if by_name['nf4 base + LoRA r8'] < by_name['nf4 base, untuned'] and by_name['fp32 base + LoRA r8'] < by_name['fp32 base, untuned'] else 'no'}",
              "", "Perplexity during training (step: value):", ""]
    for name, curve in payload["curves"].items():
        lines.append(f"- {name}: " + ", ".join(f"{step}: {value:.2f}" for step, value in curve["eval"]))
    lines += ["", "Resident memory of one LoRA step on 2 x 512 tokens, fresh process, glibc's mmap threshold at 64 kB "
              "(before the step -> peak during it):", ""]
    for name, (before, after) in payload["peak_rss"].items():
        lines.append(f"- {name}: {before / 1e9:.2f} GB -> {after / 1e9:.2f} GB")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
