"""Our GGUF files in llama.cpp (installed by make setup): loading, generation, logits, its quantizer."""

import logging
import sys

import numpy as np
import pytest
import torch

import helper
from helper.gguf_io import raw_tensor_bytes, read_gguf
from helper.llama_cpp import LlamaCppMissing, require_llama_cpp

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
# The first 8 greedy tokens of llama.cpp on our Q8_0 file for PROMPT (llama-cpp-python 0.3.36, 2 threads):
# "L'Étoile, la Cit". PyTorch's fp32 model starts "The capital of France is Paris." instead: its top logits
# lie within 0.4 of each other and llama.cpp's 8-bit activations flip that near tie (the test below checks it).
REFERENCE_Q8_0 = [60, 23, 39614, 1141, 552, 28, 2618, 12693]


def test_a_missing_install_names_the_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(LlamaCppMissing, match=r"make setup.*pip install llama-cpp-python==0\.3\.36"):
        require_llama_cpp()
    with pytest.raises(LlamaCppMissing, match="make setup"):
        helper.load_llama(helper.smollm2_gguf_path())


@pytest.fixture(scope="module")
def q8_0():
    return helper.our_gguf_path("Q8_0")


@pytest.fixture(scope="module")
def prompt_ids(smollm2):
    _, tokenizer = smollm2
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    return tokenizer(text)["input_ids"]


def test_our_q8_0_file_generates_the_stored_tokens(q8_0, prompt_ids, smollm2):
    llm = helper.load_llama(q8_0, n_ctx=128)
    tokens = helper.llama_greedy(llm, prompt_ids, 8)
    assert tokens == REFERENCE_Q8_0


def test_the_first_token_is_a_near_tie_both_engines_rank_high(q8_0, prompt_ids, smollm2):
    model, _ = smollm2
    llm = helper.load_llama(q8_0, n_ctx=128)
    llm.eval(prompt_ids)
    theirs = torch.from_numpy(np.array(helper.llama_cpp._last_logits(llm)))
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([prompt_ids])).logits[0, -1]
    assert ours.argmax().item() in theirs.topk(3).indices.tolist()
    assert theirs.argmax().item() in ours.topk(3).indices.tolist()
    assert ours.topk(3).values[0] - ours.topk(3).values[2] < 1.0  # a near tie: three tokens within one logit


def test_llama_logits_agree_with_pytorch(q8_0, smollm2):
    model, tokenizer = smollm2
    window = helper.token_windows(tokenizer, n_windows=1, window=128)
    llm = helper.load_llama(q8_0, n_ctx=128, logits_all=True)
    llm.eval(window[0].tolist())
    theirs = torch.from_numpy(np.array(llm.scores[:128]))
    with torch.no_grad():
        ours = model(input_ids=window).logits[0]
    agree = (theirs.argmax(-1) == ours.argmax(-1)).float().mean().item()
    assert agree > 0.9
    assert (theirs - ours).abs().mean().item() < 0.1 * ours.std().item()
    ppl = helper.llama_perplexity(llm, window)
    assert ppl == pytest.approx(helper.perplexity(model, window), rel=0.02)


def test_llama_perplexity_needs_all_logits(q8_0, smollm2):
    _, tokenizer = smollm2
    llm = helper.load_llama(q8_0, n_ctx=64)
    with pytest.raises(ValueError, match="logits_all=True"):
        helper.llama_perplexity(llm, helper.token_windows(tokenizer, 1, 32))
    llm = helper.load_llama(q8_0, n_ctx=64, logits_all=True)  # llama.cpp rounds the context up (to 256)
    with pytest.raises(ValueError, match="do not fit the context"):
        helper.llama_perplexity(llm, helper.token_windows(tokenizer, 1, llm.n_ctx() + 1))


def test_llama_quantizer_writes_the_same_q4_0_blocks_as_ours(tmp_path):
    theirs = read_gguf(helper.llama_quantize(helper.smollm2_gguf_path(), tmp_path / "q4_0.gguf", "Q4_0"))
    ours = read_gguf(helper.our_gguf_path("Q4_0"))
    for name in ("blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.29.ffn_up.weight"):
        assert theirs.tensor(name).type_name == "Q4_0"
        assert np.array_equal(raw_tensor_bytes(theirs, name), raw_tensor_bytes(ours, name)), name


def test_load_llama_refuses_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        helper.load_llama(tmp_path / "nope.gguf")
    with pytest.raises(ValueError, match="type_name"):
        helper.llama_quantize(helper.smollm2_gguf_path(), tmp_path / "x.gguf", "Q3_X")


def test_llama_quantizer_falls_back_quietly_and_the_file_says_so(tmp_path, capsys):
    # Q4_K needs rows that are multiples of 256; SmolLM2's 576-wide rows fall back to other block types.
    path = helper.llama_quantize(helper.smollm2_gguf_path(), tmp_path / "q4_k_m.gguf", "Q4_K_M")
    captured = capsys.readouterr()
    assert "falling back" not in captured.err + captured.out
    types = {t.name: t.type_name for t in read_gguf(path).tensors}
    assert types["blk.0.attn_q.weight"] == "Q5_0" and "Q4_K" in types.values()
    assert logging.getLogger("llama-cpp-python").level != logging.CRITICAL  # the level is put back
