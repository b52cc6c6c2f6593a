"""make bench: lesson 05's numbers on SmolLM2-135M-Instruct, 16 x 512 tokens, and the full GGUF bit-exact check.

Written to bench/results/lesson05_formats.md.
"""

import copy
import time
from pathlib import Path

import numpy as np
import torch

import helper
from helper import codebooks as cb
from helper import gguf_io


def gguf_check() -> str:
    """Every quantized tensor of the real file, our dequantizer vs gguf.quants, compared bit for bit."""
    from gguf import GGUFReader, quants

    path = helper.smollm2_gguf_path()
    ours, reference = gguf_io.read_gguf(path), GGUFReader(path)
    exact, total = 0, 0
    for mine, theirs in zip(ours.tensors, reference.tensors):
        if mine.type_name == "F32":
            continue
        total += 1
        expected = quants.dequantize(theirs.data, theirs.tensor_type).astype(np.float32).reshape(-1)
        exact += np.array_equal(gguf_io.load_tensor(ours, mine.name).numpy().reshape(-1).view(np.uint32),
                                expected.view(np.uint32))
    return f"GGUF: {exact} of {total} quantized tensors dequantize bit-exactly (our reader vs gguf.quants)."


def main() -> None:
    helper.set_offline()
    helper.quiet_libraries()
    start = time.perf_counter()
    model, tokenizer = helper.load_smollm2()
    windows = helper.token_windows(tokenizer, n_windows=16, window=512)
    rows = [("fp32", model, 32.0)]
    for name, book in (("NF4", cb.nf4_codebook()), ("FP4 (bitsandbytes)", cb.bnb_fp4_codebook()),
                       ("FP4 E2M1 (OCP)", cb.fp4_e2m1_codebook(normalized=True))):
        for double in (False, True):
            rows.append((f"{name} block 64{' + double quant' if double else ''}",
                         cb.codebook_quantize_model(copy.deepcopy(model), book, 64, double),
                         cb.codebook_bits_per_parameter(double_quant=double)))
    rows.append(("int4 g64 symmetric RTN", helper.apply_recipe(model, helper.Recipe("int4 g64", "ours", 4, 64, True)),
                 4.5))
    written = gguf_io.write_gguf(helper.smollm2_gguf_path(), helper.cache_dir() / "bench" / "SmolLM2.Q8_0.gguf", "Q8_0")
    rows.append(("GGUF Q8_0 written by write_gguf, reloaded by transformers (all weights incl. embeddings)",
                 helper.load_gguf_model(written.path), 8.5))
    lines = ["| weights | perplexity | bits/weight |", "|---|---|---|"]
    for name, quantized, bits in rows:
        ppl = helper.perplexity(quantized, windows, batch_size=4, progress=True)
        lines.append(f"| {name} | {ppl:.2f} | {bits:.3f} |")
        print(lines[-1], flush=True)
    x = torch.randn(2**20, generator=torch.Generator().manual_seed(0))
    mse = ["| codebook | MSE on N(0,1), blocks of 64 |", "|---|---|"]
    for name, book in (("NF4", cb.nf4_codebook()), ("FP4 (bitsandbytes)", cb.bnb_fp4_codebook()),
                       ("FP4 E2M1 / 6", cb.fp4_e2m1_codebook(True)), ("int4 k/7", cb.int4_codebook())):
        mse.append(f"| {name} | {cb.codebook_mse(x, book):.5f} |")
    mse.append(f"| NF4 theory (integration) | {cb.nf4_expected_mse(cb.nf4_codebook()):.5f} |")
    mse.append(f"| Lloyd-Max 16 levels (fixed scale) | {helper.lloyd_max_gaussian(16)[1]:.5f} |")
    check = gguf_check()
    out = Path(__file__).parent / "results" / "lesson05_formats.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Lesson 05: 4-bit codebooks on SmolLM2-135M-Instruct\n\n"
                   "Perplexity on 16 windows x 512 tokens of CPython's pydoc topics; all linear layers but lm_head, "
                   f"blocks of 64. Total {time.perf_counter() - start:.0f} s. Produced by `make bench` "
                   "(bench/lesson05_formats.py).\n\n" + "\n".join(lines) + "\n\n" + "\n".join(mse) + "\n\n" + check + "\n")
    print("\n".join(mse))
    print(check)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
