"""Figures for lesson 05: codebook bins (fp4_bins / nf4_bins), code usage, one GGUF block, llama.cpp's trade-offs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

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


def _spread_apart(positions: list[float], gap: float) -> list[float]:
    """Positions moved as little as possible so that neighbours are at least gap apart (order kept).

    Crowded positions form a cluster centred on their mean: _spread_apart([0, 0, 5], 1) = [-0.5, 0.5, 5].
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    clusters: list[list[int]] = []  # runs of indices (in sorted order) placed gap apart around their mean
    for i in order:
        clusters.append([i])
        while len(clusters) > 1:
            previous, last = clusters[-2], clusters[-1]
            if _cluster_start(positions, last, gap) - _cluster_end(positions, previous, gap) >= gap - 1e-12:
                break
            clusters[-2:] = [previous + last]
    spread = list(map(float, positions))
    for cluster in clusters:
        start = _cluster_start(positions, cluster, gap)
        for k, i in enumerate(cluster):
            spread[i] = start + k * gap
    return spread


def _cluster_start(positions: list[float], cluster: list[int], gap: float) -> float:
    return float(np.mean([positions[i] for i in cluster])) - gap * (len(cluster) - 1) / 2


def _cluster_end(positions: list[float], cluster: list[int], gap: float) -> float:
    return _cluster_start(positions, cluster, gap) + gap * (len(cluster) - 1)


# Where a point's label may go, in points from the point, tried in this order: right-above first.
_LABEL_OFFSETS = [(4, 3), (-4, 3), (4, -10), (-4, -10), (14, 16), (-14, 16), (14, -16), (-14, -16), (22, 26),
                  (-22, 26), (22, -26), (-22, -26), (30, 36), (-30, 36), (30, -36), (-30, -36)]


def _annotate_apart(ax: Axes, xs: list[float], ys: list[float], labels: list[str], fontsize: float = 7) -> list:
    """Label each point (x, y) at the first nearby offset where the text overlaps no other label or point.

    Call it after the axes' scales and limits are final: it places labels in display coordinates.
    Also used by plots.plot_perplexity_vs_bits.
    """
    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"xs, ys and labels must have the same length, got {len(xs)}, {len(ys)}, {len(labels)}")
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    radius = 4 * ax.figure.dpi / 72  # a marker's half-width, in pixels
    points = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    taken = [Bbox.from_bounds(px - radius, py - radius, 2 * radius, 2 * radius) for px, py in points]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    texts = []
    for x, y, label in zip(xs, ys, labels):
        best = None
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dy) > 10  # a label moved further away gets a thin line to its point
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right", va="center" if far else "baseline",
                               arrowprops=dict(arrowstyle="-", color="0.5", linewidth=0.5, shrinkA=1, shrinkB=3)
                               if far else None)
            box = text.get_window_extent(renderer)
            clashes = sum(box.overlaps(other) for other in taken) + (not _contains(inside, box))
            if best is None or clashes < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clashes, text, box)
            else:
                text.remove()
            if clashes == 0:
                break
        taken.append(best[2])
        texts.append(best[1])
    return texts


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1


def plot_codebook_bins(x_normalized: torch.Tensor, codebook: torch.Tensor, name: str, ax=None) -> Figure:
    """Histogram of absmax-normalized weights, each level (red) and bin edge (grey), with the count per bin.

    The counts stand in a band above the histogram; where levels crowd (FP4 near 0) they are spread apart
    and a thin line joins each count to its level.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.6))
    levels = codebook.float().unique()
    edges = bin_edges(levels)
    counts = bin_counts(x_normalized, levels)
    ax.hist(x_normalized.flatten().numpy(), bins=200, range=(-1, 1), color="0.75")
    peak = ax.get_ylim()[1]
    band = peak * 1.06  # the counts' baseline, above the tallest bar
    for edge in edges.tolist():
        ax.axvline(edge, ymax=peak / (peak * 1.45), color="0.4", linewidth=0.6, linestyle=":")
    ax.set_xlim(-1.08, 1.08)
    ax.set_ylim(0, peak * 1.45)
    renderer = ax.figure.canvas.get_renderer()
    probe = ax.text(0, 0, "00000", fontsize=7, rotation=90)
    width = probe.get_window_extent(renderer).width  # one rotated label, in pixels
    probe.remove()
    to_data = ax.transData.inverted()
    gap = to_data.transform((width * 1.25, 0))[0] - to_data.transform((0, 0))[0]
    label_x = _spread_apart(levels.tolist(), gap)
    for level, x, count in zip(levels.tolist(), label_x, counts.tolist()):
        ax.plot([level, level], [0, peak], color="tab:red", linewidth=1.0)
        ax.plot([level, x], [peak, band], color="tab:red", linewidth=0.5)
        ax.text(x, band, f"{count}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_yticks([tick for tick in ax.get_yticks() if 0 <= tick <= peak])
    ax.set_xlabel("weight / absmax of its block of 64")
    ax.set_ylabel("number of weights")
    ax.set_title(f"{name}: levels (red), bin edges (dotted), weights per bin (numbers)", fontsize=10)
    return ax.figure


def plot_code_usage(counts: dict[str, torch.Tensor]) -> Figure:
    """Share of weights per level (sorted), one panel per codebook: how evenly each fills its bins."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4 * len(counts), 3), sharey=True)
    for ax, (name, values) in zip(np.atleast_1d(axes), counts.items()):
        share = values.float() / values.sum()
        ax.bar(range(len(share)), share.numpy(), color="tab:blue")
        ax.axhline(1 / len(share), color="0.4", linestyle="--", linewidth=1, label="perfectly even")
        ax.set_xlabel("level (sorted, lowest = 0)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("share of weights")
    fig.suptitle("How evenly each 4-bit codebook uses its levels (Gaussian weights, blocks of 64)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_q4_1_block(fields: dict[str, object], raw: np.ndarray) -> Figure:
    """One real Q4_1 block: its 20 bytes (d, m, 16 bytes of nibbles) and the 32 values they decode to."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.8), gridspec_kw={"height_ratios": [1, 2]})
    colours = ["tab:orange"] * 2 + ["tab:green"] * 2 + ["tab:blue"] * 16
    top.bar(range(20), [1] * 20, color=colours, edgecolor="white")
    for i, byte in enumerate(raw.tolist()):
        top.text(i, 0.5, f"{byte:02x}", ha="center", va="center", fontsize=8, color="white")
    top.set_xticks([0.5, 2.5, 11.5], [f"d (fp16)\n{fields['d']:.5g}", f"m (fp16)\n{fields['m']:.5g}",
                                      "16 bytes of nibbles\nlow = weights 0-15, high = weights 16-31"], fontsize=8)
    top.tick_params(axis="x", length=0)
    top.set_yticks([])
    top.set_title("One Q4_1 block (20 bytes, 32 weights, 5 bits/weight): x = q * d + m", fontsize=10)
    values = np.asarray(fields["values"], dtype=np.float64)
    bottom.bar(range(32), values, color="tab:blue")
    reach = max(np.abs(values).max(), 1e-12)
    for i, (code, value) in enumerate(zip(fields["codes"], values)):
        above = value >= 0
        bottom.text(i, value + (0.03 if above else -0.03) * reach, str(code), ha="center",
                    va="bottom" if above else "top", fontsize=7)
    bottom.set_ylim(min(values.min(), 0) - 0.15 * reach, max(values.max(), 0) + 0.15 * reach)
    bottom.axhline(0, color="0.3", linewidth=0.6)
    bottom.set_xlabel("weight index in the block (number at each bar = its 4-bit code q)")
    bottom.set_ylabel("decoded value")
    fig.tight_layout()
    return fig


def plot_gguf_tradeoffs(table: dict[str, tuple[float, float]] = LLAMA_CPP_7B_TRADEOFFS) -> Figure:
    """llama.cpp's published size vs perplexity increase per GGUF type (LLaMA-v1-7B), symlog y (F16 at 0)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    names = list(table)
    sizes = [table[name][0] for name in names]
    increases = [table[name][1] for name in names]
    for name, size, increase in zip(names, sizes, increases):
        ax.scatter(size, increase, color="tab:red" if "_K" in name else "tab:blue", zorder=3)
    linear_below = 1e-3  # symlog: linear from 0 to here (F16's 0 and Q8_0's 0.0004), logarithmic above
    ax.set_yscale("symlog", linthresh=linear_below, linscale=0.6)
    ax.set_ylim(-2e-4, 1.6)
    ax.set_xscale("log")  # spreads the crowded 2.7-5 GB types
    ax.set_xlim(2.4, 15)
    ax.set_xticks([3, 4, 5, 6, 8, 10, 13], ["3", "4", "5", "6", "8", "10", "13"])
    ax.minorticks_off()
    ax.set_xlabel("file size of LLaMA-v1-7B (GB, log scale)")
    ax.set_ylabel("perplexity increase over F16\n(linear below 0.001, log above)")
    ax.set_title("llama.cpp quantization types (red: k-quants). Source: llama.cpp quantize.cpp, 2023", fontsize=9)
    fig.tight_layout()
    _annotate_apart(ax, sizes, increases, names)
    return fig
