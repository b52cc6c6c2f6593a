import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from helper.codebooks import bin_counts, nf4_codebook  # noqa: E402
from helper.format_plots import (LLAMA_CPP_7B_TRADEOFFS, plot_code_usage, plot_codebook_bins,  # noqa: E402
                                 plot_gguf_tradeoffs, plot_q4_1_block)
from helper.gguf_io import quantize_q4_0, split_block  # noqa: E402


def _labelled(fig):
    assert fig.axes[0].get_title() or fig._suptitle is not None
    plt.close(fig)


def test_codebook_figures_show_levels_and_counts():
    x = torch.rand(640) * 2 - 1
    fig = plot_codebook_bins(x, nf4_codebook(), "NF4")
    ax = fig.axes[0]
    assert len(ax.lines) == 16 + 15  # 16 levels, 15 bin edges
    assert sum(int(t.get_text()) for t in ax.texts) == 640
    assert "absmax" in ax.get_xlabel()
    _labelled(fig)
    fig = plot_code_usage({"NF4": bin_counts(x, nf4_codebook())})
    assert fig.axes[0].get_ylabel() == "share of weights"
    _labelled(fig)


def test_gguf_figures():
    raw = np.frombuffer(bytes(range(20)), dtype=np.uint8)
    fields = {"d": 0.5, "m": -1.0, "codes": list(range(32)), "values": np.arange(32, dtype=np.float32)}
    fig = plot_q4_1_block(fields, raw)
    assert len(fig.axes[0].texts) == 20
    _labelled(fig)
    fig = plot_gguf_tradeoffs()
    assert len(fig.axes[0].collections) == len(LLAMA_CPP_7B_TRADEOFFS)
    assert "Source" in fig.axes[0].get_title()
    _labelled(fig)
    assert split_block(quantize_q4_0(np.ones(32, dtype=np.float32))[:18], "Q4_0")["codes"][0] == 0
