"""Figures for lesson 05: codebook bins (fp4_bins / nf4_bins), code usage, one GGUF block, llama.cpp's trade-offs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .codebooks import bin_counts, bin_edges

__all__ = ["LLAMA_CPP_7B_TRADEOFFS", "plot_codebook_bins", "plot_code_usage", "plot_q4_1_block",
           "plot_gguf_tradeoffs"]

# llama.cpp, examples/quantize/quantize.cpp (QUANT_OPTIONS, 2023): file size (GB) and perplexity increase
# over F16 of LLaMA-v1-7B on wikitext-2, as printed by `quantize --help`.
LLAMA_CPP_7B_TRADEOFFS = {
    "F16": (13.00, 0.0), "Q8_0": (6.70, 0.0004), "Q6_K": (5.15, 0.0044), "Q5_1": (4.70, 0.0415),
    "Q5_K_M": (4.45, 0.0142), "Q5_K_S": (4.33, 0.0353), "Q5_0": (4.30, 0.0796), "Q4_1": (3.90, 0.1846),
    "Q4_K_M": (3.80, 0.0535), "Q4_K_S": (3.56, 0.1149), "Q4_0": (3.50, 0.2499), "Q3_K_L": (3.35, 0.1803),
    "Q3_K_M": (3.06, 0.2437), "Q3_K_S": (2.75, 0.5505), "Q2_K": (2.67, 0.8698),
}


def plot_codebook_bins(x_normalized: torch.Tensor, codebook: torch.Tensor, name: str, ax=None) -> Figure:
    """Histogram of absmax-normalized weights, each level (red) and bin edge (grey), with the count per bin."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.2))
    levels = codebook.float().unique()
    edges = bin_edges(levels)
    counts = bin_counts(x_normalized, levels)
    ax.hist(x_normalized.flatten().numpy(), bins=200, range=(-1, 1), color="0.75")
    top = ax.get_ylim()[1]
    for edge in edges.tolist():
        ax.axvline(edge, color="0.4", linewidth=0.6, linestyle=":")
    for level, count in zip(levels.tolist(), counts.tolist()):
        ax.axvline(level, color="tab:red", linewidth=1.0)
        ax.annotate(f"{count}", (level, top * 0.92), ha="center", fontsize=7, rotation=90)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("weight / absmax of its block of 64")
    ax.set_ylabel("number of weights")
    ax.set_title(f"{name}: levels (red), bin edges (dotted), count per bin", fontsize=10)
    return ax.figure


def plot_code_usage(counts: dict[str, torch.Tensor]) -> Figure:
    """Share of weights per level (sorted), one panel per codebook: how evenly each fills its bins."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4 * len(counts), 3), sharey=True)
    for ax, (name, values) in zip(np.atleast_1d(axes), counts.items()):
        share = values.float() / values.sum()
        ax.bar(range(len(share)), share.numpy(), color="tab:blue")
        ax.axhline(1 / len(share), color="0.4", linestyle="--", linewidth=1, label="perfectly even")
        ax.set_xlabel("level (sorted)")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("share of weights")
    fig.suptitle("How evenly each 4-bit codebook uses its levels (Gaussian weights, blocks of 64)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_q4_1_block(fields: dict[str, object], raw: np.ndarray) -> Figure:
    """One real Q4_1 block: its 20 bytes (d, m, 16 bytes of nibbles) and the 32 values they decode to."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.2), gridspec_kw={"height_ratios": [1, 2]})
    colours = ["tab:orange"] * 2 + ["tab:green"] * 2 + ["tab:blue"] * 16
    top.bar(range(20), [1] * 20, color=colours, edgecolor="white")
    for i, byte in enumerate(raw.tolist()):
        top.text(i, 0.5, f"{byte:02x}", ha="center", va="center", fontsize=8, color="white")
    top.set_xticks([0.5, 2.5, 11.5], [f"d = {fields['d']:.5g} (fp16)", f"m = {fields['m']:.5g} (fp16)",
                                      "16 bytes: low nibbles = weights 0-15, high = 16-31"], fontsize=8)
    top.set_yticks([])
    top.set_title("One Q4_1 block (20 bytes, 32 weights, 5 bits/weight): x = q * d + m", fontsize=10)
    bottom.bar(range(32), np.asarray(fields["values"]), color="tab:blue")
    for i, code in enumerate(fields["codes"]):
        bottom.text(i, 0, str(code), ha="center", va="bottom", fontsize=7)
    bottom.set_xlabel("weight index in the block (number = its 4-bit code q)")
    bottom.set_ylabel("decoded value")
    fig.tight_layout()
    return fig


def plot_gguf_tradeoffs(table: dict[str, tuple[float, float]] = LLAMA_CPP_7B_TRADEOFFS) -> Figure:
    """llama.cpp's published size vs perplexity increase per GGUF type (LLaMA-v1-7B), log y."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, (size, increase) in table.items():
        colour = "tab:red" if "_K" in name else "tab:blue"
        ax.scatter(size, max(increase, 1e-4), color=colour, zorder=3)
        ax.annotate(name, (size, max(increase, 1e-4)), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("file size of LLaMA-v1-7B (GB)")
    ax.set_ylabel("perplexity increase over F16 (log)")
    ax.set_title("llama.cpp quantization types (red: k-quants). Source: llama.cpp quantize.cpp, 2023", fontsize=9)
    return fig
