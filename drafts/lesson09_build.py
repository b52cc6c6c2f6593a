import json
from pathlib import Path

cells = []


def md(text, tags=None):
    cell = {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}
    if tags:
        cell["metadata"]["tags"] = tags
    cells.append(cell)


def code(text, tags=None):
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": text.strip("\n").splitlines(keepends=True)}
    if tags:
        cell["metadata"]["tags"] = tags
    cells.append(cell)


md(r"""
# 09 · What quantization buys: memory, speed and deployment

Every lesson so far measured **size** and **accuracy**. This one measures **speed**, and finds a surprise first:
our own `W4A16Linear` from lesson 04 is *slower* than fp32, because it rebuilds a float weight in Python on
every forward. Speed comes from kernels that read the packed bytes inside the matmul, and the limit they
approach is set by the machine's memory bandwidth. Then our own GGUF files run in **llama.cpp**, the engine
people deploy with, and the lesson ends with how to choose a method.

**You will learn**
- why decoding one token reads every weight once, so tokens/s ≤ bandwidth / bytes of weights, and how to
  measure this machine's bandwidth and FLOP/s and draw its roofline;
- how decode and prefill tokens/s and peak memory compare for fp32, bf16, our dequantize-in-Python layers,
  PyTorch's fused int8/int4 weight-only kernels and llama.cpp, each as a fraction of its bandwidth bound;
- that our Q8_0 and Q4_0 files load in llama.cpp and give the perplexity our PyTorch evaluation gives;
- the transformers toolchain (`QuantoConfig`, `BitsAndBytesConfig`, `TorchAoConfig`, `save_pretrained`) and
  how a GPTQ checkpoint is laid out (`qweight`, `qzeros`, `scales`, `g_idx`);
- how to choose a format and a method from the course's own measurements.

Runs in about 4 minutes on 2 CPU cores (each variant is measured in a fresh process). Timings depend on the
machine and on what else runs on it: every timing cell is excluded from the notebook tests, and the prose
quotes no timing.
""")

code(r"""
import torch

import helper
from helper import deployment
from helper.deployment_plots import plot_decision_flow, plot_decode_vs_bound, plot_roofline, speed_table_text

helper.set_up_notebook()
print(f"torch threads: {torch.get_num_threads()}")
""")

md(r"""
## 1. The physical limit: bytes per token over bandwidth

Generating one token multiplies a single activation row by every weight matrix of the model. Each weight is
read from memory once and used for one multiply-add (2 FLOPs): the **arithmetic intensity** is
2 / (bytes per weight) FLOP per byte, far too little to keep a CPU's arithmetic units busy. So decode speed is
set by how fast the weights stream in:

$$\text{tokens/s} \;\le\; \frac{\text{memory bandwidth (bytes/s)}}{\text{bytes of weights read per token (+ KV cache)}}$$

SmolLM2 ties its output layer to its embedding table, so the whole table is read once per token (as the
output matmul), while the embedding lookup reads one row. `helper.decode_bytes_per_token` counts exactly the
tensors a matmul reads:
""")

code(r"""
model, tokenizer = helper.load_smollm2()
matmul_weights = helper.decode_bytes_per_token(model) // 4  # fp32: 4 bytes per weight
widths = {"fp32": 4.0, "bf16": 2.0, "Q8_0": 34 / 32, "Q4_0": 18 / 32}  # bytes per weight
print(f"weights read per decoded token: {matmul_weights:,}")
for name, width in widths.items():
    print(f"{name:>5}: {width * 8:5.2f} bits/weight -> {matmul_weights * width / 1e6:6.1f} MB per token")
""")

md(r"""
Now the machine. A STREAM-style **copy** and **triad** (`a = b + 3c`) over 256 MB arrays, far beyond any cache,
give the DRAM bandwidth; a 1024 × 1024 matmul gives the arithmetic peak. The ratio of the two is the
**ridge point**: kernels with less intensity than that are bandwidth-bound. (Medians of 5 runs; the numbers
change with the machine and its load.)
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
rates = helper.measure_bandwidth()
bandwidth = rates["triad"]
peak = {dtype: helper.measure_matmul_flops(1024, dtype) for dtype in (torch.float32, torch.bfloat16)}
print(f"bandwidth: copy {rates['copy'] / 1e9:.1f} GB/s, triad {bandwidth / 1e9:.1f} GB/s")
for dtype, flops in peak.items():
    print(f"matmul {str(dtype)[6:]}: {flops / 1e9:.1f} GFLOP/s, ridge point "
          f"{helper.ridge_point(flops, bandwidth):.1f} FLOP/byte")
for name, width in widths.items():
    bound = helper.decode_bound_tokens_per_s(matmul_weights * width, bandwidth)
    print(f"{name:>5}: decode bound {bound:6.1f} tokens/s")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
fig = plot_roofline(peak[torch.float32], bandwidth, widths, prompt_tokens=512)
""")

md(r"""
Decode (circles) sits on the sloped part of the roof: halving the bytes per weight doubles the attainable
speed, which is why 4-bit weights can make decoding faster at all. A 512-token prefill (squares) multiplies
512 rows by each weight it reads, so its intensity is 512 times higher: it is on the flat roof, bound by
arithmetic, and fewer bytes per weight buy it nothing unless the kernel also computes faster.
""")

md(r"""
## 2. A real client for our files: llama.cpp

Lesson 05 wrote SmolLM2 with **our own** Q8_0 and Q4_0 block quantizers (bit-exact against the `gguf`
package). If the format lesson is right, llama.cpp, which reads those blocks inside its matmul kernels,
must run them. `helper.our_gguf_path` writes each file once (from the shipped Q4_1 file) into the cache:
""")

code(r"""
from collections import Counter

files = {"Q4_1 (shipped)": helper.smollm2_gguf_path(), "Q8_0 (ours)": helper.our_gguf_path("Q8_0"),
         "Q4_0 (ours)": helper.our_gguf_path("Q4_0")}
for label, path in files.items():
    gguf_file = helper.read_gguf(path)
    types = dict(Counter(t.type_name for t in gguf_file.tensors))
    print(f"{label:<15} {gguf_file.file_size:>12,} bytes  {types}")
""")

md(r"""
Generation first: a chat prompt, greedy decoding, in llama.cpp on our Q8_0 file, and in PyTorch on the same
file dequantized by transformers (lesson 05 showed it dequantizes every GGUF tensor to fp32 as it loads):
""")

code(r"""
chat = [{"role": "user", "content": "What is the capital of France?"}]
prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
prompt_ids = tokenizer(prompt)["input_ids"]
llm = helper.load_llama(files["Q8_0 (ours)"], n_ctx=256)
llama_tokens = helper.llama_greedy(llm, prompt_ids, 16)
dequantized = {label: helper.load_gguf_model(files[label]) for label in ("Q8_0 (ours)", "Q4_0 (ours)")}
dequantized["Q4_1 (shipped)"] = model  # the course's fp32 SmolLM2 is the shipped file dequantized
torch_tokens = helper.greedy_decode_timing(dequantized["Q8_0 (ours)"], torch.tensor([prompt_ids]),
                                           16)["tokens"][0].tolist()
print("llama.cpp:", repr(tokenizer.decode(llama_tokens)))
print("PyTorch:  ", repr(tokenizer.decode(torch_tokens)))
print("same 16 tokens:", llama_tokens == torch_tokens)
""")

md(r"""
Both run, but the text differs from the first token on. The first step is a near tie, and the two engines
break it differently: here are each engine's three best first tokens and their logits.
""")

code(r"""
llm.reset()
llm.eval(prompt_ids)
theirs = torch.from_numpy(helper.llama_cpp._last_logits(llm).copy())
with torch.no_grad():
    ours = dequantized["Q8_0 (ours)"](input_ids=torch.tensor([prompt_ids])).logits[0, -1]
for engine, logits in (("PyTorch", ours), ("llama.cpp", theirs)):
    top = logits.topk(3)
    print(f"{engine:<9}", "  ".join(f"{tokenizer.decode([i])!r} {v:.2f}"
                                     for i, v in zip(top.indices.tolist(), top.values.tolist())))
""")

md(r"""
Three candidates lie within a fraction of a logit of each other, and llama.cpp does not compute exactly
what PyTorch computes: it quantizes the activations to 8 bits for its Q8_0/Q4_0 dot products and keeps the
KV cache in fp16. A small difference is enough to pick another token in a near tie, and greedy decoding
then follows a different path. Agreement has to be measured over many tokens, not one answer.
""")

md(r"""
Then the numbers: perplexity on 2 windows of 512 tokens of the course's evaluation text, the same token ids
fed to both engines. The target is agreement within 0.5 %; the last line says whether it is met:
""")

code(r"""
windows = helper.token_windows(tokenizer, n_windows=2, window=512)
agreement = {}
for label, path in files.items():
    engine = helper.load_llama(path, n_ctx=512, logits_all=True)
    ours, theirs = helper.perplexity(dequantized[label], windows), helper.llama_perplexity(engine, windows)
    agreement[label] = theirs / ours - 1
    print(f"{label:<15} PyTorch {ours:.3f}  llama.cpp {theirs:.3f}  difference {agreement[label]:+.2%}")
    del engine
print("all within 0.5 %:", all(abs(d) < 0.005 for d in agreement.values()))
""")

md(r"""
llama.cpp also has its own quantizer, `llama_model_quantize`, exposed by the bindings. Its **Q4_K_M** mixes
k-quant blocks (lesson 05): most tensors Q4_K (4.5 bits/weight, 256-weight super-blocks with 6-bit sub-block
scales), and some (half of the attention V and MLP down projections, the output table) Q6_K.
Here it is next to our Q4_0, both made from the same shipped Q4_1 file, both evaluated in llama.cpp:
""")

code(r"""
q4_k_m = helper.llama_quantize(helper.smollm2_gguf_path(), helper.cache_dir() / "gguf" /
                               "SmolLM2-135M-Instruct.Q4_K_M.llama.gguf", "Q4_K_M")
for label, path in (("Q4_0 (ours)", files["Q4_0 (ours)"]), ("Q4_K_M (llama.cpp)", q4_k_m)):
    gguf_file = helper.read_gguf(path)
    engine = helper.load_llama(path, n_ctx=512, logits_all=True)
    print(f"{label:<19} {gguf_file.file_size:>11,} bytes  {dict(Counter(t.type_name for t in gguf_file.tensors))}"
          f"  perplexity {helper.llama_perplexity(engine, windows):.3f}")
    del engine
""")

md(r"""
Q4_K_M spends more bytes than Q4_0 (its Q6_K tensors); the perplexities show what they buy. For comparison,
lesson 06's GPTQ (int4, asymmetric, act-order, g128) reaches +11 % over fp32 on 16 windows (its bench,
`bench/results/lesson06_methods.md`): a different evaluation, so not a like-for-like number.
""")

md(r"""
## 3. Measured: tokens/s and peak memory of every variant

Each variant is built and timed in a **fresh Python process** (`deployment.measure_variant`), so one variant's
memory never inflates another's peak: the child imports everything, notes its resident memory (the
baseline), builds the variant, frees what building it needed, resets the peak, then runs greedy generation
(a 32-token prompt, 8 more tokens) three times after a warm-up and reports the medians and the peak.

- **fp32, bf16**: PyTorch's own linear layers.
- **w8a16, w4a16**: our lesson-04 layers (int4 in groups of 64), dequantizing the weight in Python.
- **int8-kernel, int4-kernel**: *the same codes*, multiplied by PyTorch's fused CPU kernels
  `torch._weight_int8pack_mm` and `_weight_int4pack_mm_for_cpu` (what torchao's CPU weight-only configs
  call). `lm_head` stays in fp32 in all four, as in lessons 04–06.
- **llama-…**: llama.cpp on our Q8_0 and Q4_0 files, the shipped Q4_1 and its own Q4_K_M.

The bound uses each variant's own bytes per token and the triad bandwidth measured above. The predicted
memory is baseline + weights + KV cache.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
results = [deployment.measure_variant(name, prompt_tokens=32, new_tokens=9) for name in deployment.VARIANTS]
print(speed_table_text(results, bandwidth))
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
fig = plot_decode_vs_bound(results, bandwidth)
""")

md(r"""
What the table shows, and why:

- **Our W8A16/W4A16 are slower than fp32**, although they store a quarter or an eighth of the bytes. Each
  forward rebuilds a full float weight (`int8_weights.to(dtype) * scales`, or unpack + scale for int4),
  which *writes and reads* more bytes than fp32 reads, then runs the ordinary fp32 matmul on it. Storage
  shrank; the bytes moved per token did not.
- **The fused kernels** read the int8 or packed int4 codes inside the matmul and apply the scales to the
  results. Same codes, same outputs, far fewer bytes moved: they are the ones that can approach their bound.
- **llama.cpp** runs the whole model in C with memory-mapped weights, quantized blocks for every matmul
  (including the output table, which our PyTorch variants keep in fp32), and no Python in the loop.
- **Prefill** is compute-bound, so fewer bytes do not help it by themselves; a kernel that unpacks codes
  spends arithmetic on that, and BLAS-backed fp32 matmuls are hard to beat there.
- **Memory**: the peak is the baseline plus what the weights take resident, plus the runtime's buffers (KV
  cache, logits, llama.cpp's compute buffers); the last column compares it with the prediction.

The same codes must give the same tokens, whichever kernel multiplies them:
""")

code(r"""
by_name = {r["variant"]: r for r in results}
for slow, fast in (("w8a16", "int8-kernel"), ("w4a16", "int4-kernel")):
    print(f"{slow} and {fast} generate the same tokens: {by_name[slow]['tokens'] == by_name[fast]['tokens']}")
""")

md(r"""
**Batch size changes the picture.** With 8 sequences decoded together, each weight read serves 8 rows: the
intensity rises 8-fold and the bandwidth bound on tokens/s rises with it, until the arithmetic becomes the
limit. A kernel whose per-weight arithmetic is expensive (unpacking, dequantizing) loses its advantage as
the batch grows:
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
for name in ("fp32", "w4a16", "int4-kernel"):
    batched = deployment.measure_variant(name, prompt_tokens=32, new_tokens=9, batch=8)
    print(f"{name:<12} decode tokens/s: batch 1 {by_name[name]['decode_tokens_per_s']:7.1f}   "
          f"batch 8 {batched['decode_tokens_per_s']:7.1f}")
""")

md(r"""
## 4. The transformers toolchain a practitioner uses

In practice you rarely swap layers by hand: `from_pretrained(..., quantization_config=...)` does it while
loading. All of these run here offline, on the course's local SmolLM2 folder.
""")

code(r"""
import os
import tempfile

from transformers import AutoModelForCausalLM, BitsAndBytesConfig, QuantoConfig, TorchAoConfig

folder = deployment.smollm2_folder()


def saved_bytes(quantized_model):
    # What save_pretrained writes, file by file (or the error it raises).
    with tempfile.TemporaryDirectory() as target:
        try:
            quantized_model.save_pretrained(target)
        except ValueError as error:
            return f"not saved: {str(error)[:60]}..."
        return {name: os.path.getsize(os.path.join(target, name)) for name in sorted(os.listdir(target))}
""")

code(r"""
configs = {"quanto int8": QuantoConfig(weights="int8"),
           "bitsandbytes 8-bit": BitsAndBytesConfig(load_in_8bit=True),
           "bitsandbytes NF4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")}
for label, config in configs.items():
    loaded = AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map="cpu",
                                                  local_files_only=True)
    layer = loaded.model.layers[0].mlp.up_proj
    print(f"{label}: {type(layer).__module__}.{type(layer).__name__}")
    print(f"    save_pretrained: {saved_bytes(loaded)}")
    del loaded
try:
    TorchAoConfig("int8_weight_only")
except (ImportError, ValueError) as error:
    print(f"TorchAoConfig: {error}")
""")

md(r"""
- **Quanto** swaps in its `QLinear` (lesson 04 compared ours with it) but transformers refuses to
  `save_pretrained` a quanto model: quanto's own `quantization_map` + safetensors is the way to store one.
- **bitsandbytes** now runs on CPU: 8-bit `Linear8bitLt` (LLM.int8(), lesson 06) and 4-bit `Linear4bit` with
  NF4 (lesson 05). Both save; the files stay well above the weights' 8 or 4 bits because the embedding
  table and norms are kept in fp32.
- **torchao** is not part of this course's environment, and the error says so; the fused int8/int4 CPU
  kernels it would call are measured directly in section 3.

A **GPTQ (or AWQ) checkpoint** on the hub is a safetensors file with four tensors per linear layer.
`helper.export_gptq_checkpoint` writes our lesson-06 GPTQ result that way, and `helper.read_gptq_checkpoint`
reads it back. Here for one layer, GPTQ int4 asymmetric with act-order, groups of 64, calibrated on two
windows that the evaluation above does not use:
""")

code(r"""
layer = model.model.layers[0].mlp.up_proj
hessian = helper.HessianAccumulator(layer.in_features)
hook = layer.register_forward_hook(lambda module, args, output: hessian.add_batch(args[0]))
with torch.no_grad():
    model(input_ids=helper.token_windows(tokenizer, n_windows=4, window=512)[2:4])
hook.remove()
config = helper.GPTQConfig(bits=4, group_size=64, symmetric=False, zero_point_domain="int", act_order=True,
                           scale_bits=16)
result = helper.gptq_quantize_weight(layer.weight, hessian.result(), config)
""")

code(r"""
from safetensors import safe_open

with tempfile.TemporaryDirectory() as target:
    path = os.path.join(target, "model.safetensors")
    print("quantize_config:", helper.export_gptq_checkpoint({"model.layers.0.mlp.up_proj": result.quantized},
                                                            path))
    with safe_open(path, framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            print(f"  {key:<36} {str(tensor.dtype):<14} {str(tuple(tensor.shape)):<12} "
                  f"{tensor.numel() * tensor.element_size():>9,} bytes")
    weights = helper.read_gptq_checkpoint(path)
print("read back = GPTQ's weights:", torch.equal(weights["model.layers.0.mlp.up_proj"], result.weight))
""")

md(r"""
`qweight` packs 8 codes per int32 along the *input* dimension (transposed: (in / 8, out)); `qzeros` packs the
zero-points along the *output* dimension and stores zero − 1 (the original GPTQ format's convention, which
loaders undo); `scales` are fp16 per group; `g_idx` names each input column's group. With act-order,
GPTQ quantizes columns in a permuted order, yet our groups keep contiguous columns ("static groups",
lesson 06), so `g_idx` is simply `column // 64` and the file loads in kernels that require that.
""")

md(r"""
## 5. How to choose

The course measured, on one model and one machine, what each choice costs and buys. The guide below turns
those measurements into recommendations; each row names the number it rests on.
""")

code(r"""
guide = [
    ("fit in memory (CPU)", "GGUF Q4_K_M or Q4_0 in llama.cpp", "section 2: a quarter of fp32's bytes, "
     "perplexity next to the Q4_1 origin's"),
    ("fit in memory (GPU)", "NF4 (bitsandbytes) or GPTQ/AWQ int4", "lesson 05: NF4 has the lowest 4-bit MSE "
     "on Gaussian weights"),
    ("speed on CPU", "llama.cpp, or fused int8/int4 kernels", "section 3: dequantize-in-Python is slower "
     "than fp32; fused kernels are not"),
    ("speed on GPU, batch 1", "int4 weight-only (GPTQ/AWQ + a fused kernel)", "section 1: decode is "
     "bandwidth-bound, fewer bytes = more tokens/s"),
    ("serve many users", "W8A8 (SmoothQuant int8, FP8)", "section 3's batch 8: intensity grows with the "
     "batch, compute becomes the limit"),
    ("best accuracy at 4 bits", "AWQ scales + GPTQ act-order", "lesson 06 bench: +9 % vs fp32, RTN int4 "
     "asym +35 %"),
    ("fine-tune", "QLoRA (NF4 base + LoRA) or QAT", "lesson 07: the frozen base stays 4-bit while "
     "adapters train"),
]
print(f"{'goal':<24} {'choose':<46} evidence")
for goal, choice, evidence in guide:
    print(f"{goal:<24} {choice:<46} {evidence}")
""")

code(r"""
fig = plot_decision_flow()
""")

md(r"""
The flow chart asks the questions in the order they usually decide: training first (it needs gradients
through the quantized model), then the hardware (llama.cpp's GGUF is the CPU answer), then the batch
(large batches make W8A8 worthwhile because they are compute-bound), then the accuracy budget at 4 bits.
""")

md(r"""
## Recap

- Decoding reads every weight once per token: **tokens/s ≤ bandwidth / bytes per token**. Decode is
  bandwidth-bound, prefill compute-bound (the roofline shows both).
- Smaller storage is not speed: our dequantize-in-Python layers move *more* bytes than fp32. Fused kernels
  that read packed codes (PyTorch's int8/int4 weight-only, llama.cpp's blocks) turn fewer bytes into
  more tokens/s.
- Our own Q8_0 and Q4_0 files run in llama.cpp, the engine people deploy with, and its own quantizer writes
  the same Q4_0 blocks as ours (a test); its numerics differ from PyTorch's a little, enough to flip a
  near tie in greedy decoding, and the perplexities above show by how much.
- The transformers toolchain does the layer swapping for you; a GPTQ checkpoint is `qweight`, `qzeros`,
  `scales` and `g_idx`, and ours round-trips exactly.
- Choose by goal and hardware first, then by the accuracy budget: the guide above, grounded in lessons 04–09.

## Exercises
""")

md(r"""
**Exercise 1.** A 7-billion-parameter model in Q4_0 (4.5 bits per weight) runs on a laptop whose memory
delivers 60 GB/s. What is the most tokens per second it can decode (ignore the KV cache)? One decimal.
""", tags=["exercise"])
code(r"""
answer = ...
helper.check("09.decode_bound", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$60 \cdot 10^9 / (7 \cdot 10^9 \cdot 4.5 / 8) = 15.2$ tokens/s. `helper.decode_bound_tokens_per_s(7e9 * 4.5 / 8, 60e9)`.
</details>
""", tags=["solution"])

md(r"""
**Exercise 2.** A 256-token prompt goes through an int8 weight matrix in one prefill. What is its arithmetic
intensity in FLOPs per byte of weights?
""", tags=["exercise"])
code(r"""
answer = ...
helper.check("09.prefill_intensity", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$2 \cdot 256 / 1 = 512$ FLOP/byte (`helper.arithmetic_intensity(256, 1)`): to the right of the ridge point,
compute-bound.
</details>
""", tags=["solution"])

md(r"""
**Exercise 3.** How many bytes does SmolLM2's KV cache take for 2048 tokens in fp16? It has 30 layers,
9 attention heads but 3 KV heads (grouped-query attention), head dimension 64.
""", tags=["exercise"])
code(r"""
answer = ...
helper.check("09.kv_cache", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$2 \cdot 30 \cdot 3 \cdot 64 \cdot 2048 \cdot 2$ bytes (K and V, layers, KV heads, head dimension, tokens,
bytes): `helper.kv_cache_bytes(30, 3, 64, 2048, bytes_per_value=2)`.
</details>
""", tags=["solution"])

md(r"""
**Exercise 4.** Write `unpack_word(word)` that returns the 8 four-bit codes of one `qweight` int32 word,
code 0 in the lowest 4 bits. Words are Python ints from −2³¹ to 2³¹ − 1 (negative when the top code is 8 or
more). The checker tries hidden words.
""", tags=["exercise"])
code(r"""
def unpack_word(word):
    return ...


helper.check("09.unpack_qweight_word", unpack_word)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

```python
def unpack_word(word):
    return [(word >> (4 * k)) & 15 for k in range(8)]
```
Python's `>>` on a negative int shifts in ones; `& 15` keeps only the 4 bits of each code.
</details>
""", tags=["solution"])

md(r"""
This is the course's last lesson. Where next: the README's results tables (`make bench`), and the
`helper` modules behind each lesson, named after the ideas they implement.
""")

nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python", "version": "3.11.7"}}, "nbformat": 4, "nbformat_minor": 5}
for i, cell in enumerate(nb["cells"]):
    cell["id"] = f"cell-{i:02d}"
Path("/work/main/notebooks/09_memory_speed_and_deployment.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
print(len(cells), "cells")
