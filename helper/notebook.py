"""One call at the top of every lesson: same seeds, same printing, no library noise, no network."""

from __future__ import annotations

import logging
import os
import random
import warnings

import numpy as np
import torch

from .validation import check_int_in_range

__all__ = ["set_offline", "quiet_libraries", "seed_everything", "set_up_notebook"]

_OFFLINE_VARIABLES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline() -> None:
    """Tell the Hugging Face libraries never to reach for a hub (sets process environment variables)."""
    os.environ.update(_OFFLINE_VARIABLES)


# Libraries whose own warnings (deprecations, version notices) vary between runs and versions.
# Only warnings raised inside these packages are hidden: a warning from a learner's cell, or from
# helper, still shows.
_NOISY_LIBRARIES = ("transformers", "torch", "torchao", "optimum", "bitsandbytes", "huggingface_hub",
                    "gguf", "accelerate", "safetensors", "tokenizers", "sentence_transformers")


def quiet_libraries() -> None:
    """Hide warnings raised inside the libraries we call, their log noise and progress bars; yours still show."""
    warnings.filterwarnings("ignore", module=r"(" + "|".join(_NOISY_LIBRARIES) + r")(\..*)?$")
    for name in ("transformers", "torchao", "bitsandbytes", "optimum", "huggingface_hub", "gguf"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch so every run draws the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    _ = torch.manual_seed(seed)


def set_up_notebook(seed: int = 0, precision: int = 4, threads: int | None = None) -> None:
    """Seed, set print precision, go offline, silence noise, fix figure defaults; prints the versions used.

    Changes global state on purpose (that is its job): seeds, torch/NumPy print options,
    environment variables, warning filters and matplotlib defaults. threads, if given, sets torch's intra-op
    threads: lessons made of many small ops (06, 07) use 1, since on busy shared cores a second thread makes
    each op wait for a time slice (helper/threads.py has the measurements).
    """
    if threads is not None:
        torch.set_num_threads(check_int_in_range(threads, "threads", 1, 1024))
    set_offline()
    quiet_libraries()
    seed_everything(seed)
    torch.set_printoptions(precision=precision, sci_mode=False)
    np.set_printoptions(precision=precision, suppress=True)
    import matplotlib

    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # plain Python: no inline backend to select
        shell = None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
    matplotlib.rcParams.update({
        "figure.figsize": (7.0, 3.6),
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 10,
    })
    import transformers

    shown = "" if threads is None else f" | {threads} thread{'s' if threads > 1 else ''}"
    print(f"torch {torch.__version__} | transformers {transformers.__version__} | seed {seed} | offline{shown}")
