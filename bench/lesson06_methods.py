"""make bench: lesson 06's table (RTN, GPTQ, AWQ, mixed precision, 3- and 2-bit) on SmolLM2-135M-Instruct.

Evaluation: windows 0..15 (16 x 512 tokens of CPython's pydoc topics). Calibration: windows 16..31,
disjoint from them. Written to bench/results/lesson06_methods.md.
"""

import copy
import time
from pathlib import Path

import torch

import helper
from helper.methods import LESSON_06_METHODS, evaluate_methods, grid_bits_per_weight, method_table_text


def activation_rows(model, evaluation, calibration) -> list[dict]:
    """W8A8 (naive vs SmoothQuant, per-token and per-tensor activations) and LLM.int8(), simulated in fp32."""
    rows = []
    int8_bits = grid_bits_per_weight(model, 8, None)
    start = time.perf_counter()
    act_absmax = helper.activation_channel_absmax(model, calibration)
    smoothed = helper.smooth_model(copy.deepcopy(model), act_absmax, alpha=0.5)
    smoothed_absmax = helper.activation_channel_absmax(smoothed, calibration)
    calibrate = time.perf_counter() - start
    candidates = [(f"W8A8 {name}, {mode.replace('_', '-')} activations",
                   lambda base=base, mode=mode, maxima=maxima: helper.w8a8_model(copy.deepcopy(base), mode, maxima))
                  for name, base, maxima in (("naive", model, act_absmax), ("SmoothQuant a=0.5", smoothed, smoothed_absmax))
                  for mode in ("per_token", "per_tensor")]
    candidates += [("int8 vector-wise (no outlier split)", lambda: helper.llm_int8_model(copy.deepcopy(model), float("inf"))),
                   ("LLM.int8() threshold 6", lambda: helper.llm_int8_model(copy.deepcopy(model), 6.0))]
    for name, build in candidates:
        print(f"{name} ...", flush=True)
        begin = time.perf_counter()
        quantized = build()
        rows.append({"method": name, "perplexity": helper.perplexity(quantized, evaluation, 4, progress=True),
                     "bits_per_weight": int8_bits, "seconds_quantize": calibrate if "Smooth" in name else 0.0,
                     "seconds": time.perf_counter() - begin})
        print(f"  perplexity {rows[-1]['perplexity']:.2f}", flush=True)
    return rows


def main() -> None:
    helper.set_offline()
    helper.quiet_libraries()
    torch.manual_seed(0)
    model, tokenizer = helper.load_smollm2()
    evaluation = helper.token_windows(tokenizer, n_windows=16, window=512)
    calibration = helper.token_windows(tokenizer, n_windows=32, window=512)[16:]
    start = time.perf_counter()
    rows = []
    for method in LESSON_06_METHODS:  # one at a time, so progress shows which method runs
        print(f"{method.name} ...", flush=True)
        rows += evaluate_methods(model, evaluation, calibration, (method,), progress=True)
        print(f"  perplexity {rows[-1]['perplexity']:.2f}, {rows[-1]['bits_per_weight']:.2f} bits/weight, "
              f"{rows[-1]['seconds_quantize']:.0f} s to quantize", flush=True)
    rows += activation_rows(model, evaluation, calibration)
    table = method_table_text(rows, base=rows[0]["perplexity"], with_seconds=True)
    out = Path(__file__).parent / "results" / "lesson06_methods.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Lesson 06: beating round-to-nearest on SmolLM2-135M-Instruct\n\n"
                   "Perplexity on windows 0-15 (16 x 512 tokens of CPython's pydoc topics); calibration on "
                   "windows 16-31 (disjoint). W8A8 and LLM.int8() rows are simulated in fp32 (int8 fake quantization of "
                   "weights and activations); their bits/weight are the int8 weights'. All linear layers of the 30 blocks, never lm_head. g128 adapts to "
                   "96 where 128 does not divide 576 (as lesson 04). Bits per weight count codes plus fp32 "
                   f"scales/minimums. torch threads: {torch.get_num_threads()}; total "
                   f"{time.perf_counter() - start:.0f} s.\nProduced by `make bench` (bench/lesson06_methods.py)."
                   "\n\n```\n" + table + "\n```\n")
    print(table)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
