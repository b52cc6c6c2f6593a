"""make bench: lesson 06's tables on SmolLM2-135M-Instruct, every row at its real storage format.

Evaluation: windows 0..15 (16 x 512 tokens of CPython's pydoc topics). Calibration: windows 16..31 of the same
text, disjoint from them ("same"), or windows 0..15 of helper.stdlib_docstring_text() ("other").
Every row goes through helper.methods.evaluate_methods (one code path); results are merged by row name into
bench/results/lesson06_methods.json and the tables in bench/results/lesson06_methods.md are redrawn from it,
so a run can add or redo a subset of rows:

    python bench/lesson06_methods.py                 # every row not measured yet
    python bench/lesson06_methods.py --rows "int3"   # rows whose name matches a regular expression (redone)
"""

import argparse
import copy
import json
import re
import time
from pathlib import Path

import torch

import helper
from helper.methods import Method, evaluate_methods, grid_bits_per_weight, method_table_text

CHECKPOINT = {"zero_point_domain": "int", "scale_bits": 16}  # the storage of GPTQ/AWQ files, on every row
ASYM = {"symmetric": False}
AO = {"symmetric": False, "act_order": True}
LLM_AWQ = {"awq_search": "block", "awq_clip": True}
OUTLIERS = ("model.layers.11.mlp.down_proj", "model.layers.28.mlp.down_proj", "model.layers.29.mlp.down_proj")
G64_BITS = 4 + (16 + 4) / 64  # uniform asym g64 in the checkpoint format: the equal-bits budget for mixed precision

# (table, method). Every int4 row: g128 (96 where 128 does not divide 576), fp16 scales, integer zero-points.
ROWS = (
    ("equal", Method("fp32", "fp32", 32)),
    ("equal", Method("RTN int8 per-channel", "rtn", 8, None, **CHECKPOINT)),
    ("equal", Method("RTN int4 sym", "rtn", 4, **CHECKPOINT)),
    ("equal", Method("RTN int4 asym", "rtn", 4, **ASYM, **CHECKPOINT)),
    ("equal", Method("GPTQ int4 sym", "gptq", 4, **CHECKPOINT)),
    ("equal", Method("GPTQ int4 sym act-order", "gptq", 4, act_order=True, **CHECKPOINT)),
    ("equal", Method("GPTQ int4 asym", "gptq", 4, **ASYM, **CHECKPOINT)),
    ("equal", Method("GPTQ int4 asym act-order", "gptq", 4, **AO, **CHECKPOINT)),
    ("equal", Method("AWQ int4 sym", "awq", 4, **CHECKPOINT, **LLM_AWQ)),
    ("equal", Method("AWQ int4 asym", "awq", 4, **ASYM, **CHECKPOINT, **LLM_AWQ)),
    ("best", Method("AWQ scales+clip, then GPTQ int4 asym act-order", "awq+gptq", 4, **AO, **CHECKPOINT,
                    **LLM_AWQ)),
    ("best", Method("AWQ scales+clip, then GPTQ int4 asym act-order MSE-clip", "awq+gptq", 4, clip_search=True,
                    **AO, **CHECKPOINT, **LLM_AWQ)),
    ("low", Method("RTN int3 asym", "rtn", 3, **ASYM, **CHECKPOINT)),
    ("low", Method("GPTQ int3 asym act-order MSE-clip", "gptq", 3, clip_search=True, **AO, **CHECKPOINT)),
    ("low", Method("AWQ scales+clip, then GPTQ int3 asym act-order MSE-clip", "awq+gptq", 3, clip_search=True,
                   **AO, **CHECKPOINT, **LLM_AWQ)),
    ("mixed", Method("GPTQ int4 asym act-order + int8 down_proj 11/28/29", "gptq", 4, int8_layers=OUTLIERS, **AO,
                     **CHECKPOINT)),
    ("mixed", Method(f"mixed: GPTQ int4 + int8 by Fisher (<= {G64_BITS:.4f} b/w)", "mixed", 4, budget_bits=G64_BITS,
                     **AO, **CHECKPOINT)),
    ("mixed", Method("GPTQ int4 g64 asym act-order (uniform)", "gptq", 4, 64, **AO, **CHECKPOINT)),
    ("ablation", Method("RTN int4 asym MSE-clip", "rtn", 4, clip_search=True, **ASYM, **CHECKPOINT)),
    ("ablation", Method("GPTQ int4 asym act-order MSE-clip", "gptq", 4, clip_search=True, **AO, **CHECKPOINT)),
    ("ablation", Method("GPTQ int4 asym act-order true-sequential", "gptq", 4, true_sequential=True, **AO,
                        **CHECKPOINT)),
    ("ablation", Method("GPTQ int4 scale+min act-order (fp32 scale, fp32 min)", "gptq", 4, zero_point_domain="float",
                        scale_bits=32, **AO)),
    ("ablation", Method("AWQ int4 asym, block search, no clip", "awq", 4, awq_clip=False, **ASYM, **CHECKPOINT,
                        awq_search="block")),
    ("ablation", Method("AWQ int4 asym, layer search (simpler variant)", "awq", 4, awq_search="layer",
                        awq_clip=False, **ASYM, **CHECKPOINT)),
    ("calibration", Method("GPTQ int4 asym act-order, calibrated on stdlib docstrings", "gptq", 4,
                           calibration="other", **AO, **CHECKPOINT)),
    ("low", Method("RTN int2 g32 asym", "rtn", 2, 32, **ASYM, **CHECKPOINT)),
    ("low", Method("GPTQ int2 g32 asym act-order MSE-clip", "gptq", 2, 32, clip_search=True, **AO, **CHECKPOINT)),
)
Q4_1_ROWS = (  # the same rows on SmolLM2 with its weights pushed off the Q4_1 grid (see perturbed_off_q4_1)
    Method("off-grid: fp32", "fp32", 32),
    Method("off-grid: RTN int4 asym", "rtn", 4, **ASYM, **CHECKPOINT),
    Method("off-grid: GPTQ int4 asym act-order", "gptq", 4, **AO, **CHECKPOINT),
)
FIRST = ("fp32", "RTN int4 sym", "RTN int4 asym", "GPTQ int4 asym act-order", "GPTQ int4 sym", "AWQ int4 asym",
         "AWQ scales+clip, then GPTQ int4 asym act-order", "GPTQ int3 asym act-order MSE-clip",
         "GPTQ int4 asym act-order + int8 down_proj 11/28/29", "GPTQ int4 g64 asym act-order (uniform)",
         "off-grid: fp32", "off-grid: RTN int4 asym", "off-grid: GPTQ int4 asym act-order",
         "GPTQ int4 asym act-order, calibrated on stdlib docstrings", "GPTQ int4 sym act-order",
         "GPTQ int4 asym")  # run these first: the machine is shared, the rest may wait for a later run
TITLES = {
    "equal": "Equal storage: every int4 row at g128 with fp16 scales (+ 4-bit zero-points when asym)",
    "best": "Combinations for the +10 % target at <= 4.25 bits/weight",
    "low": "3 and 2 bits",
    "mixed": "Mixed precision per linear layer, at equal bits with uniform GPTQ",
    "ablation": "Ablation (each row changes one thing)",
    "calibration": "Calibration on a different text (compare with GPTQ int4 asym act-order above)",
    "q4_1": "Is the Q4_1 origin of the weights to blame? The same rows on weights pushed off the Q4_1 grid",
    "activations": "Activations in int8 too (simulated in fp32; bits/weight are the int8 weights')",
}
RESULTS = Path(__file__).parent / "results"


def q4_1_grid_fraction(model) -> float:
    """Share of 32-weight blocks (along the input) of the linear layers with at most 16 distinct values."""
    on_grid, total = 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            blocks = module.weight.detach().reshape(-1, 32)
            sorted_blocks = blocks.sort(dim=1).values
            distinct = 1 + (sorted_blocks.diff(dim=1) != 0).sum(dim=1)
            on_grid += (distinct <= 16).sum().item()
            total += blocks.shape[0]
    return on_grid / total


@torch.no_grad()
def perturbed_off_q4_1(model, seed: int = 0):
    """A copy whose linear weights get Gaussian noise of std step / sqrt(12) per Q4_1 block (step = range / 15):
    the RMS of one rounding, so the weights leave the grid without becoming a much worse model."""
    generator = torch.Generator().manual_seed(seed)
    noisy = copy.deepcopy(model)
    for name, module in noisy.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            blocks = module.weight.view(-1, 32)
            step = (blocks.amax(dim=1, keepdim=True) - blocks.amin(dim=1, keepdim=True)) / 15
            blocks += torch.randn(blocks.shape, generator=generator) * step / 12 ** 0.5
    return noisy


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
                  for name, base, maxima in (("naive", model, act_absmax), ("SmoothQuant a=0.5", smoothed,
                                                                              smoothed_absmax))
                  for mode in ("per_token", "per_tensor")]
    candidates += [("int8 vector-wise (no outlier split)",
                    lambda: helper.llm_int8_model(copy.deepcopy(model), float("inf"))),
                   ("LLM.int8() threshold 6", lambda: helper.llm_int8_model(copy.deepcopy(model), 6.0))]
    for name, build in candidates:
        begin = time.perf_counter()
        quantized = build()
        rows.append({"method": name, "perplexity": helper.perplexity(quantized, evaluation, 4),
                     "bits_per_weight": int8_bits, "seconds_quantize": calibrate if "Smooth" in name else 0.0,
                     "seconds": time.perf_counter() - begin, "table": "activations"})
    return rows


def write_markdown(results: dict[str, dict], note: str) -> Path:
    """Redraw every table from the stored rows, in ROWS order."""
    order = ([m.name for _, m in ROWS] + [m.name for m in Q4_1_ROWS] +
             [name for name, row in results.items() if row.get("table") == "activations"])
    base = results.get("fp32", {}).get("perplexity")
    parts = ["# Lesson 06: beating round-to-nearest on SmolLM2-135M-Instruct, at equal storage\n", note]
    for table, title in TITLES.items():
        rows = [results[name] for name in order if name in results and results[name]["table"] == table]
        if rows:
            table_base = results.get("off-grid: fp32", {}).get("perplexity") if table == "q4_1" else base
            parts.append(f"\n## {title}\n\n```\n{method_table_text(rows, table_base, with_seconds=True)}\n```\n")
    out = RESULTS / "lesson06_methods.md"
    out.write_text("\n".join(parts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", help="regular expression: (re)do only the rows whose name matches")
    parser.add_argument("--activations", action="store_true", help="(re)do the W8A8 / LLM.int8() rows")
    args = parser.parse_args()
    helper.set_offline()
    helper.quiet_libraries()
    torch.manual_seed(0)
    model, tokenizer = helper.load_smollm2()
    evaluation = helper.token_windows(tokenizer, n_windows=16, window=512)
    calibration = {"same": helper.token_windows(tokenizer, n_windows=32, window=512)[16:],
                   "other": helper.token_windows(tokenizer, 16, 512, helper.stdlib_docstring_text())}
    store = RESULTS / "lesson06_methods.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    jobs = [(table, method, model) for table, method in ROWS] + [("q4_1", m, None) for m in Q4_1_ROWS]
    jobs.sort(key=lambda job: FIRST.index(job[1].name) if job[1].name in FIRST else len(FIRST))  # stable
    noisy = None
    for table, method, base in jobs:
        wanted = re.search(args.rows, method.name) if args.rows else method.name not in results
        if not wanted:
            continue
        if base is None:
            noisy = noisy or perturbed_off_q4_1(model)
            base = noisy
        print(f"{method.name} ...", flush=True)
        row = evaluate_methods(base, evaluation, calibration, (method,), progress=False)[0]
        row["table"] = table
        row["threads"] = torch.get_num_threads()
        results[method.name] = row
        store.write_text(json.dumps(results, indent=1))
        print(f"  perplexity {row['perplexity']:.2f}, {row['bits_per_weight']:.3f} bits/weight, "
              f"{row['seconds_quantize']:.0f} s to quantize", flush=True)
    if args.activations:
        for row in activation_rows(model, evaluation, calibration["same"]):
            results[row["method"]] = row
        store.write_text(json.dumps(results, indent=1))
    note = (f"Perplexity on windows 0-15 (16 x 512 tokens of CPython's pydoc topics); calibration on windows 16-31 "
            "(disjoint), except the row calibrated on helper.stdlib_docstring_text(). AWQ's scale search runs on "
            "one calibration batch per block (4 windows, 2,048 tokens; 20 alphas), its clip search on 512 tokens. "
            "All linear layers of the 30 "
            "blocks, never lm_head. g128 adapts to 96 where 128 does not divide 576 (as lesson 04); g64 divides "
            "both 576 and 1536. Bits per weight are the checkpoint format GPTQ/AWQ files use "
            "(helper.weight_storage_bits: codes + fp16 scales + integer zero-points packed at the code width; "
            "the int8 layers 8 bits + one fp16 scale per row), except the row marked fp32 scale/min. "
            f"Share of 32-weight blocks of the original weights with <= 16 distinct values (on a Q4_1 grid): "
            f"{q4_1_grid_fraction(model):.1%}. Quantize (s): wall-clock on a shared 2-core machine "
            f"(torch threads: {torch.get_num_threads()}), so only a rough cost.\n"
            "Produced by `make bench` (bench/lesson06_methods.py); rows are stored in lesson06_methods.json.\n")
    out = write_markdown(results, note)
    print(out.read_text())


if __name__ == "__main__":
    main()
