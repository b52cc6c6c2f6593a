import json, sys
cells = []
import nbformat.v4 as v4
def md(text, tags=None):
    c = v4.new_markdown_cell(text.strip("\n"))
    if tags: c["metadata"]["tags"] = tags
    cells.append(c)
def code(text, tags=None):
    c = v4.new_code_cell(text.strip("\n"))
    if tags: c["metadata"]["tags"] = tags
    cells.append(c)

md(r"""
# 07 · Training through quantization

Lessons 04–06 quantized a trained model and stopped: round to nearest, or choose the codes cleverly (GPTQ,
AWQ), but never train again. This lesson trains *through* the rounding, on the real SmolLM2-135M.

**You will learn**
- **QAT on an LLM**: fake-quantize every linear weight to int4 (g128, the checkpoint format of lesson 06) with
  lesson 03's straight-through estimator and fine-tune by **distillation** from the fp32 model;
- **learned step sizes** (LSQ): make each group's scale a parameter, and train only the scales, block by
  block, on cached block inputs;
- **QLoRA from scratch**: a LoRA layer over a frozen NF4 base (lesson 05), checked against `peft`;
- the **memory** of fine-tuning (base, adapters, gradients, Adam, activations) for SmolLM2, 7 B and 70 B;
- what **merging** the adapters into a 4-bit base costs.

**Fast configuration.** Evaluation: the first 512 tokens of the reference text (lesson 06's window 0) as 2
windows of 256 tokens. Training and calibration: windows of 64 tokens starting at token 8,192, after all 16
of lesson 06's evaluation windows: disjoint from every evaluation. A few optimizer steps each, so the whole
notebook runs in about 5 minutes of CPU time on 2 cores; `make bench` runs the longer version
(`bench/results/lesson07_training.md`).
""")

code(r"""
import copy

import torch

import helper

helper.set_up_notebook()
model, tokenizer = helper.load_smollm2()
evaluation = helper.token_windows(tokenizer, n_windows=2, window=256)  # tokens 0-511
training = helper.token_windows(tokenizer, n_windows=160, window=64)[128:]  # tokens 8,192-10,239
results = {}


def evaluate(m):
    return helper.perplexity(m, evaluation, batch_size=2)


def evaluate_stored(m):
    with helper.stored_weights(m):
        return evaluate(m)


results["fp32"] = evaluate(model)
rtn = helper.to_qat(model)  # int4 g128 asym, fp16 scales, 4-bit zero-points; started from RTN
with helper.stored_weights(rtn):  # codes x fp16 scales, as a checkpoint stores them
    results["RTN int4"] = evaluate(rtn)
bits = helper.qat_bits_per_weight(rtn)
for name, value in results.items():
    print(f"{name:9} perplexity {value:6.2f}")
print(f"int4 g128 storage: {bits:.3f} bits/weight (g96 where 128 does not divide 576)")
""")

md(r"""
Every linear layer of the 30 blocks (never `lm_head`) is now a `helper.QATLinear`: a latent fp32 weight
$w$, one scale $s$ and one integer zero-point $z$ per group, and the forward uses
$\hat w = (\mathrm{clamp}(\lfloor w/s \rceil + z, 0, 15) - z)\, s$. Stored, that is 4-bit codes plus an fp16
scale and a 4-bit zero-point per group: the format GPTQ checkpoints use.

## 1. QAT: gradients through the rounding

Rounding has zero gradient almost everywhere. Lesson 03's **straight-through estimator** pretends
$\partial \lfloor x \rceil / \partial x = 1$: the weight's gradient passes through where the code is inside the
grid and is zero where it is clamped. With the scale as a parameter too, the same trick gives LSQ's
step-size gradient (Esser et al. 2020): $\partial \hat w / \partial s = \lfloor w/s \rceil - w/s$ inside the
grid and $q - z$ where clamped, so the scale learns to trade rounding error against clipping. By hand, on
one group of four weights:
""")

code(r"""
w = torch.tensor([0.37, -0.12, 2.0, -0.9], requires_grad=True)
s = torch.tensor(0.1, requires_grad=True)
z = 8.0
ratio = w / s
codes = torch.clamp(ratio + (torch.round(ratio) - ratio).detach() + z, 0, 15)  # round with the STE
w_hat = (codes - z) * s
w_hat.sum().backward()
print("w_hat       ", w_hat.detach().numpy().round(3))
print("d w_hat / dw", w.grad.numpy(), " (0 where the code is clamped)")
print(f"d w_hat / ds {s.grad.item():.2f} = (4 - 3.7) + (-1 + 1.2) + (15 - 8) + (-9 + 9)")
ours = helper.lsq_fake_quantize(w.detach().reshape(1, 1, 4), torch.full((1, 1, 1), 0.1),
                                torch.full((1, 1, 1), z), 0, 15)
assert torch.equal(ours.flatten(), w_hat.detach())  # the helper computes the same
""")

md(r"""
**Distillation.** The student is the fake-quantized model, the teacher the fp32 model; the loss is the
KL divergence of their next-token distributions, averaged over positions. The text is one the teacher
already models (the windows after token 8,192), so the student can only gain by undoing what rounding
broke. The **fp32 control** makes that concrete: an fp32 student distilled from itself starts at KL = 0 and
receives no gradient at all, so training "the same way" cannot change it:
""")

code(r"""
control = copy.deepcopy(model)
with torch.no_grad():
    teacher_logits = model(input_ids=training[:2]).logits
logits = control(input_ids=training[:2]).logits
loss = helper.distillation_loss(logits, teacher_logits)
loss.backward()
largest = max(p.grad.abs().max().item() for p in control.parameters() if p.grad is not None)
print(f"fp32 control: KL {loss.item():.1e} nats/token, largest gradient {largest:.1e}")
del control, logits, teacher_logits, loss
""")

md(r"""
Now QAT from RTN: Adam on the latent weights (learning rate $2 \cdot 10^{-5}$) and the log-scales
($10^{-3}$; a log-scale step is a relative change), one window of 64 tokens per step, perplexity of the
stored weights measured before and after. Four steps only, to fit the time budget.
""")

code(r"""
STEPS = 4
histories = {}
histories["QAT from RTN"] = helper.train_distilled(
    rtn, model, training, steps=STEPS, lr=2e-5, scale_lr=1e-3, batch_size=1, evaluate=evaluate_stored,
    eval_every=STEPS, progress=True)
results["QAT from RTN"] = histories["QAT from RTN"]["eval"][-1][1]
print(f"QAT from RTN, {STEPS} steps: perplexity {results['RTN int4']:.2f} -> {results['QAT from RTN']:.2f}")
print("KL per step:", [round(loss, 3) for loss in histories["QAT from RTN"]["loss"]])
""")

md(r"""
Each step sees a new window, so the loss curve is noisy over so few steps. Starting QAT from GPTQ's solution
(its codes, scales and zero-points) instead of RTN's is `helper.to_qat(model, gptq_results)`; GPTQ on all
210 layers alone takes minutes here, so that comparison runs in `make bench`.
""")

md(r"""
## 2. Learned step sizes, block by block

Training the whole model needs the teacher's and the student's logits over the 49,152-token vocabulary at
every step. Most of what QAT fixes is local, so OmniQuant-style methods train **one block at a time**:
cache what enters block $k$ (from the quantized blocks before it), and train only block $k$'s scales so its
output matches the fp32 block's output on the fp32 model's own inputs (so block $k$ also makes up for the
errors before it). The latent weights stay where RTN put them; moving a scale moves codes. This is
`helper.learn_scales_blockwise`, on the `layerwise` skeleton of lesson 06:
""")

code(r"""
scales_only = helper.to_qat(model, train_weight=False)
start = copy.deepcopy(scales_only)
curves = helper.learn_scales_blockwise(scales_only, model, training[:4], steps=4, lr=5e-3,
                                       batch_size=2, progress=True)
results["learned scales (block-wise)"] = evaluate_stored(scales_only)
drops = [min(curve) / curve[0] for curve in curves]
print(f"block output MSE, best of 4 steps: {min(drops):.0%}-{max(drops):.0%} of its start, by block")
print(f"learned scales: perplexity {results['learned scales (block-wise)']:.2f}")
""")

md(r"""
Perplexity against training steps for each variant, with fp32 and RTN as horizontal lines (the learned
scales are drawn at the end of their block-wise pass):
""")

code(r"""
evaluations = {name: history["eval"] for name, history in histories.items()}
evaluations["learned scales (block-wise)"] = [(0, results["RTN int4"]),
                                              (4, results["learned scales (block-wise)"])]
fig = helper.plot_training_curves({name: h["loss"] for name, h in histories.items()}, evaluations,
                                  {"fp32": results["fp32"], "RTN": results["RTN int4"]},
                                  "SmolLM2 int4 g128: perplexity on tokens 0-511")
""")

md(r"""
How far did training move the weights? In units of each group's step $s$: a code changes only when a
weight crosses a rounding boundary (dotted lines at $\pm 0.5$ step from where RTN rounded it, for a weight
that sat on the grid).
""")

code(r"""
initial = helper.to_qat(model)
moves = helper.code_changes(initial, rtn)
scale_moves = helper.code_changes(start, scales_only)
print(f"QAT from RTN, {STEPS} steps: {moves['codes_changed']:.2%} of codes changed")
print(f"learned scales: {scale_moves['codes_changed']:.2%} of codes changed (latent weights fixed)")
fig = helper.plot_code_moves({"QAT from RTN": moves["steps_moved"]},
                             "Latent weight change in steps of its scale, all 210 layers")
del initial, start
""")

md(r"""
## 3. QLoRA from scratch

QLoRA (Dettmers et al. 2023) freezes the base model in 4 bits and trains only a low-rank update:
$y = \mathrm{dequant}(W_{\mathrm{NF4}})\,x + \frac{\alpha}{r} B A x$, with $A$ ($r \times$ in) initialised like
`peft` (Kaiming-uniform) and $B$ ($\text{out} \times r$) zero, so training starts from the quantized model
exactly. The base is NF4 in blocks of 64 with double-quantized constants (lesson 05, 4.127 bits/weight).
`helper.LoRALinear` against `peft` on a real layer (block 0's `q_proj`), with the same base, the same $A$
and a non-zero $B$:
""")

code(r"""
import peft

layer = model.model.layers[0].self_attn.q_proj
ours = helper.LoRALinear(layer, rank=8, alpha=16, base="nf4")
reference = torch.nn.Sequential(torch.nn.Linear(576, 576, bias=False))
with torch.no_grad():
    reference[0].weight.copy_(ours.base_weight_dequantized())
    ours.lora_B.normal_(std=0.01)
reference = peft.get_peft_model(reference, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))
peft_layer = reference.base_model.model[0]
with torch.no_grad():
    peft_layer.lora_A["default"].weight.copy_(ours.lora_A)
    peft_layer.lora_B["default"].weight.copy_(ours.lora_B)
x = torch.randn(2, 16, 576)
(ours(x) ** 2).sum().backward()
(reference(x) ** 2).sum().backward()
pairs = {"output": (ours(x), reference(x)),
         "grad A": (ours.lora_A.grad, peft_layer.lora_A["default"].weight.grad),
         "grad B": (ours.lora_B.grad, peft_layer.lora_B["default"].weight.grad)}
for name, (a, b) in pairs.items():
    print(f"{name:6} max |ours - peft| / max |peft| = {((a - b).abs().max() / b.abs().max()).item():.0e}")
""")

md(r"""
Agreement to float32 rounding. Now fine-tune SmolLM2 both ways, rank 8 on every linear layer of the blocks,
next-token cross-entropy on the training windows, same steps and learning rate: LoRA over the NF4 base
(QLoRA) and LoRA over the fp32 base.
""")

code(r"""
LORA_STEPS = 4
lora_models, lora_histories = {}, {}
for base in ("nf4", "fp32"):
    lora_models[base] = helper.add_lora(model, rank=8, alpha=16, base=base)
    lora_histories[base] = helper.train_lora(lora_models[base], training, steps=LORA_STEPS, lr=1e-3,
                                             batch_size=1, evaluate=evaluate, eval_every=LORA_STEPS,
                                             progress=True)
for base, history in lora_histories.items():
    (_, before), (_, after) = history["eval"][0], history["eval"][-1]
    results[f"{base} + LoRA"] = after
    print(f"{base:4} base + LoRA: perplexity {before:.2f} untuned -> {after:.2f} after {LORA_STEPS} steps")
gap = results["nf4 + LoRA"] / results["fp32 + LoRA"] - 1
print(f"NF4 + LoRA vs fp32 + LoRA: {gap:+.1%}")
""")

md(r"""
## 4. Memory, QLoRA-paper style

What fine-tuning holds: the frozen base, the adapters, their gradients, Adam's two fp32 moments per adapter
weight, and the activations saved for the backward pass. Measured from SmolLM2's tensors, then the same
formula for 7 B and 70 B models (LoRA rank 8 on the same share of weights; activations left out of the
formula rows, they depend on batch and sequence length):
""")

code(r"""
from helper._text import text_table

qlora = lora_models["nf4"]
tensors = helper.measured_training_bytes(qlora)
adapters = sum(p.numel() for p in helper.lora_parameters(qlora))
print(f"SmolLM2 NF4 + LoRA tensors: frozen {tensors['frozen'] / 1e6:.1f} MB, adapters "
      f"{tensors['adapters'] / 1e6:.2f} MB ({adapters:,} parameters)")
rows = []
share = adapters / 134_515_008
for name, params in (("SmolLM2-135M", 134_515_008), ("7 B", 6_738_415_616), ("70 B", 68_976_648_192)):
    for label, bits in (("32-bit", 32), ("16-bit", 16), ("NF4+DQ", 4.127)):
        parts = helper.lora_memory_bytes(params, round(params * share), bits)
        rows.append([name, label] + [helper.format_bytes(parts[k]) for k in
                                     ("base weights", "adapters", "Adam states", "total")])
header = ["model", "base", "base weights", "adapters", "Adam", "total (no activations)"]
print(text_table(header, rows))
""")

md(r"""
## 5. Merging the adapters

To serve without the adapter matmuls, fold them in: $W' = \mathrm{dequant}(W_{\mathrm{NF4}}) + \frac{\alpha}{r}BA$.
Before re-quantization that is exactly the trained model; to store $W'$ in 4 bits again it must be rounded
back to the NF4 grid, and $BA$ is not on it:
""")

code(r"""
merged = helper.merge_lora_model(qlora)
requantized = helper.merge_lora_model(qlora, requantize=True)
results["merged, fp32"] = evaluate(merged)
results["merged, re-quantized to NF4"] = evaluate(requantized)
for name in ("nf4 + LoRA", "merged, fp32", "merged, re-quantized to NF4"):
    print(f"{name:28} perplexity {results[name]:.2f}")
del merged, requantized
""")

md(r"""
## 6. The reference path: bitsandbytes + peft on CPU

The usual QLoRA recipe loads the model with `transformers`' `BitsAndBytesConfig(load_in_4bit=True,
bnb_4bit_quant_type="nf4")` and wraps it with `peft`. bitsandbytes 0.50.2 is installed here; does it
run on this CPU?
""")

code(r"""
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helper.models import _smollm2_folder

try:
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    bnb_model = AutoModelForCausalLM.from_pretrained(_smollm2_folder(), quantization_config=config,
                                                     device_map="cpu")
    print(type(bnb_model.model.layers[0].self_attn.q_proj).__name__)
except Exception as error:
    print(f"{type(error).__name__}: {str(error)[:300]}")
""")

md(r"""
## 7. All together
""")

code(r"""
fp32 = results["fp32"]
for name, value in results.items():
    print(f"{name:30} perplexity {value:7.2f}   {value / fp32 - 1:+6.1%} vs fp32")
""")

md(r"""
## Exercises

**Exercise 1.** LoRA of rank 8 on SmolLM2's `mlp.down_proj` (576 outputs, 1536 inputs): how many parameters
train?
""", tags=["exercise"])
code(r"""
answer = ...  # an integer
helper.check("07.lora_params", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$A$ is $8 \times 1536$ and $B$ is $576 \times 8$: $8 \times (1536 + 576) = 16{,}896$ parameters, 1.9 % of the
layer's 884,736 weights.
</details>
""", tags=["solution"])
md(r"""
**Exercise 2.** LLaMA-7B has 6,738,415,616 parameters. How many GB (10⁹ bytes) does its frozen base take in
NF4 with double quantization (4.127 bits per weight)?
""", tags=["exercise"])
code(r"""
answer = ...  # GB
helper.check("07.qlora_7b_gb", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$6{,}738{,}415{,}616 \times 4.127 / 8 = 3.48 \times 10^9$ bytes: 3.48 GB (bf16 would take 13.48 GB).
</details>
""", tags=["solution"])
md(r"""
**Exercise 3.** An int4 group has scale $s = 0.1$ and zero-point $z = 8$ (codes 0..15). With the STE,
what is $\partial \hat w / \partial s$ for $w = 0.37$, and for $w = 2.0$? Give two numbers.
""", tags=["exercise"])
code(r"""
answer = ...  # [for w = 0.37, for w = 2.0]
helper.check("07.lsq_gradient", answer)
""", tags=["exercise"])
md(r"""
<details><summary>Solution</summary>

$0.37 / 0.1 = 3.7$ rounds to 4, inside the grid: $\lfloor w/s \rceil - w/s = 0.3$. $2.0 / 0.1 + 8 = 28$ is
clamped to 15: $\hat w = (15 - 8)\,s$, so the derivative is 7.
</details>
""", tags=["solution"])
md(r"""
## Recap

- **QAT** keeps a latent fp32 weight, rounds it on every forward and passes gradients straight through;
  distillation from the fp32 model on text disjoint from evaluation makes the gain recovery from rounding.
- **LSQ** makes the scale a parameter: $\partial \hat w / \partial s = \lfloor w/s \rceil - w/s$ inside the grid,
  $q - z$ outside; trained block by block, it is cheap.
- **QLoRA** freezes an NF4 base and trains $A$, $B$: the memory is the 4-bit base plus small adapters and
  their optimizer states; `helper.LoRALinear` matches `peft`.
- **Merging** adapters into a 4-bit base moves weights off the grid; re-quantizing costs perplexity.
- Next: lesson 08 measures what quantization buys in speed and memory at inference.
""")

for i, c in enumerate(cells):
    c["id"] = f"cell-{i:02d}"
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python", "version": "3.11.7"}}, "nbformat": 4, "nbformat_minor": 5}
import nbformat
nbf = nbformat.from_dict(nb)
nbformat.validate(nbf)
nbformat.write(nbf, sys.argv[1])
