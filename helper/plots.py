"""Figures the lessons draw; each returns its matplotlib Figure so tests can inspect it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .dtypes import FLOAT_LAYOUTS, all_finite_values, decompose, dtype_name, resolve_dtype
from .linear_quant import QuantizedTensor, dequantize
from .sizes import FORMAT_BITS, model_memory_bytes

__all__ = ["FIELD_COLOURS", "plot_bit_layout", "plot_value_spacing", "plot_bytes_per_parameter",
           "plot_model_memory", "plot_footprints", "plot_downcast_cost", "plot_number_line", "plot_grid_on_histogram",
           "plot_quantization_heatmaps", "plot_error_vs_group_size", "plot_calibration_ranges", "plot_module_sizes",
           "plot_perplexity_vs_bits"]

FIELD_COLOURS = {"sign": "#d62728", "exponent": "#1f77b4", "mantissa": "#2ca02c"}


def plot_bit_layout(value: float, dtype: torch.dtype | str, ax=None) -> Figure:
    """One box per bit, coloured by field (sign / exponent / mantissa), titled with the stored value."""
    parts = decompose(value, dtype)
    layout = FLOAT_LAYOUTS[parts.dtype]
    fields = ["sign"] + ["exponent"] * layout.exponent_bits + ["mantissa"] * layout.mantissa_bits
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.32 * layout.bits + 1), 1.6), layout="constrained")
    for i, (bit, field) in enumerate(zip(parts.bits, fields)):
        ax.add_patch(Rectangle((i, 0), 0.92, 1, color=FIELD_COLOURS[field], alpha=0.85))
        ax.text(i + 0.46, 0.5, bit, ha="center", va="center", color="white", fontsize=10, fontweight="bold")
    for field, colour in FIELD_COLOURS.items():
        ax.plot([], [], "s", color=colour, label=field)
    ax.set_xlim(-0.15, layout.bits + 0.07)  # a margin, so the first and last boxes do not touch the edge
    ax.set_ylim(-0.5, 1)
    ax.axis("off")
    ax.legend(loc="lower center", ncol=3, frameon=False, fontsize=8, borderaxespad=0)
    ax.set_title(f"{value!r} stored as {dtype_name(parts.dtype)} = {parts.value!r} ({layout.bits} bits)", fontsize=10)
    return ax.figure


def plot_value_spacing(dtypes: tuple[str, ...] = ("float8_e4m3fn", "float8_e5m2", "float16", "bfloat16"),
                       xlim: tuple[float, float] = (2.0**-20, 2.0**20), ax=None) -> Figure:
    """Gap to the next representable value vs the value itself (log-log), within xlim: range and precision.

    Only values inside xlim are drawn, and the y axis spans just their gaps (bf16's subnormals, down to
    2^-133, would otherwise squash every curve). A dot marks a format's largest value when it is in view.
    """
    if len(xlim) != 2 or not 0 < xlim[0] < xlim[1]:
        raise ValueError(f"xlim must be (low, high) with 0 < low < high, got {xlim!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
    smallest_gap, largest_gap = np.inf, 0.0
    for name in dtypes:
        dtype = resolve_dtype(name)
        values = all_finite_values(dtype)
        positive = values[values > 0]
        gaps = positive[1:] - positive[:-1]  # gap from each value to the next one up
        starts = positive[:-1]
        shown = (starts >= xlim[0]) & (starts <= xlim[1])
        largest = positive[-1].item()
        label = dtype_name(dtype) + (f" (max {largest:,g})" if largest <= xlim[1] else f" (max {largest:.3g})")
        line, = ax.step(starts[shown].numpy(), gaps[shown].numpy(), where="post", label=label)
        smallest_gap = min(smallest_gap, gaps[shown].min().item())
        largest_gap = max(largest_gap, gaps[shown].max().item())
        if largest <= xlim[1]:
            ax.scatter([largest], [gaps[-1].item()], color=line.get_color(), s=18, zorder=3)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlim(*xlim)
    ax.set_ylim(smallest_gap / 4, largest_gap * 4)
    ax.set_xlabel("value x (log scale)")
    ax.set_ylabel("gap to the next value (log scale)")
    ax.set_title("Floats are dense near 0 and sparse far away")
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


def plot_bytes_per_parameter(ax=None) -> Figure:
    """Bar chart: bytes one parameter needs in each format."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    names = list(FORMAT_BITS)
    values = [FORMAT_BITS[n] / 8 for n in names]
    bars = ax.bar(names, values, color=plt.cm.viridis(np.linspace(0.15, 0.85, len(names))))
    ax.bar_label(bars, labels=[f"{v:g} B" for v in values])
    ax.set_ylabel("bytes per parameter")
    ax.set_title("Storage per parameter")
    ax.set_ylim(0, max(values) * 1.2)
    return ax.figure


def plot_model_memory(param_counts: dict[str, int], formats: tuple[str, ...] = tuple(FORMAT_BITS),
                      budget_bytes: float | None = 16e9, ax=None) -> Figure:
    """Grouped bars: weight memory of each model in each format (log scale), with a RAM budget line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(formats)
    x = np.arange(len(param_counts))
    colours = plt.cm.viridis(np.linspace(0.15, 0.85, len(formats)))
    for i, (fmt, colour) in enumerate(zip(formats, colours)):
        gigabytes = [model_memory_bytes(n, fmt) / 1e9 for n in param_counts.values()]
        ax.bar(x + (i - (len(formats) - 1) / 2) * width, gigabytes, width, label=fmt, color=colour)
    if budget_bytes:
        ax.axhline(budget_bytes / 1e9, color="#d62728", linestyle="--", linewidth=1)
        ax.text(-0.45, budget_bytes / 1e9 * 1.15, f"a {budget_bytes / 1e9:g} GB laptop",
                color="#d62728", ha="left", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, list(param_counts))
    ax.set_ylabel("weights memory (GB, log scale)")
    ax.set_title("How much memory the weights alone need")
    ax.legend(ncol=len(formats), fontsize=8, loc="upper left")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)  # room for the legend above the tallest bars
    return ax.figure


def plot_footprints(footprints: dict[str, dict[str, int]], ax=None) -> Figure:
    """Grouped bars: measured footprint (MB) of each model (outer key) in each dtype (inner key)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    dtypes = list(next(iter(footprints.values())))
    width = 0.8 / len(dtypes)
    x = np.arange(len(footprints))
    colours = plt.cm.viridis(np.linspace(0.15, 0.85, len(dtypes)))
    for i, (dtype, colour) in enumerate(zip(dtypes, colours)):
        megabytes = [sizes[dtype] / 1e6 for sizes in footprints.values()]
        bars = ax.bar(x + (i - (len(dtypes) - 1) / 2) * width, megabytes, width, label=dtype, color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, list(footprints))
    ax.set_ylabel("get_memory_footprint() (MB)")
    ax.set_title("Measured footprint: half the bytes in 16-bit formats")
    ax.legend(fontsize=8)
    return ax.figure


def plot_downcast_cost(errors: dict[str, dict[str, float]], ylabel: str, title: str, ax=None) -> Figure:
    """Bars on a log scale: an error measure (vs fp32) for each model (outer key) and dtype (inner key)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.4))
    dtypes = list(next(iter(errors.values())))
    width = 0.8 / len(dtypes)
    x = np.arange(len(errors))
    colours = plt.cm.plasma(np.linspace(0.2, 0.8, len(dtypes)))
    for i, (dtype, colour) in enumerate(zip(dtypes, colours)):
        values = [errors[model][dtype] for model in errors]
        bars = ax.bar(x + (i - (len(dtypes) - 1) / 2) * width, values, width, label=dtype, color=colour)
        ax.bar_label(bars, fmt="%.1e", fontsize=7)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 6)  # room above the tallest bar for its label and the legend
    ax.set_xticks(x, list(errors))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax.figure


def plot_number_line(quantized: QuantizedTensor, values: torch.Tensor, ax=None) -> Figure:
    """The grid of a per-tensor quantizer on a number line, each value's arrow to the level it rounds to."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.8))
    scheme = quantized.scheme
    codes = torch.arange(scheme.qmin, scheme.qmax + 1)
    levels = dequantize(codes, quantized.scale.flatten()[0], quantized.zero_point.flatten()[0])
    ax.axhline(0, color="0.6", linewidth=1)
    ax.plot(levels, torch.zeros_like(levels), "|", markersize=18, color="#1f77b4")
    for code, level in zip(codes.tolist(), levels.tolist()):
        ax.text(level, -0.55, f"q={code}", ha="center", fontsize=8, color="#1f77b4")
    for value, level in zip(values.flatten().tolist(), quantized.dequantize().flatten().tolist()):
        ax.annotate("", xy=(level, 0.05), xytext=(value, 0.6),
                    arrowprops=dict(arrowstyle="->", color="#d62728", linewidth=1))
        ax.text(value, 0.68, f"{value:g}", ha="center", fontsize=8, color="#d62728")
    ax.set_ylim(-0.9, 1.0)
    ax.set_yticks([])
    ax.grid(False)
    ax.set_xlabel("real value")
    ax.set_title(f"{scheme.bits}-bit grid: scale {quantized.scale.flatten()[0].item():g}, "
                 f"zero-point {quantized.zero_point.flatten()[0].item()}")
    return ax.figure


def plot_grid_on_histogram(x: torch.Tensor, quantized: dict[str, QuantizedTensor], bins: int = 80) -> Figure:
    """One panel per quantizer: histogram of x with the quantizer's levels; how many levels the data can use."""
    fig, axes = plt.subplots(len(quantized), 1, figsize=(7, 2.2 * len(quantized)), sharex=True,
                             layout="constrained")
    axes = np.atleast_1d(axes)
    low, high = x.min().item(), x.max().item()
    for ax, (name, q) in zip(axes, quantized.items()):
        codes = torch.arange(q.scheme.qmin, q.scheme.qmax + 1)
        levels = dequantize(codes, q.scale.flatten()[0], q.zero_point.flatten()[0])
        used = int(((levels >= low - 1e-12) & (levels <= high + 1e-12)).sum())
        ax.hist(x.flatten().numpy(), bins=bins, color="0.75")
        for level in levels.tolist():
            ax.axvline(level, color="#1f77b4", linewidth=0.8, alpha=0.8)
        ax.set_title(f"{name}: {used} of {len(levels)} levels inside the data's range", fontsize=10)
        ax.set_ylabel("count")
    axes[-1].set_xlabel("value")
    return fig


def plot_quantization_heatmaps(original: torch.Tensor, dequantized: torch.Tensor, title: str = "",
                               error_limit: float | None = None) -> Figure:
    """Three heatmaps side by side: original, dequantized, and their difference on a ±error_limit colour scale.

    Pass the same error_limit to several figures so their error panels can be compared by colour
    (default: this figure's own largest |error|).
    """
    if error_limit is not None and not (np.isfinite(error_limit) and error_limit > 0):
        raise ValueError(f"error_limit must be a finite number > 0, got {error_limit!r}")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), layout="constrained")
    limit = original.abs().max().item()
    error = (dequantized - original)
    error_limit = error_limit or error.abs().max().item() or 1.0
    panels = [("original", original, limit, "RdBu_r", "weight"),
              ("quantized -> dequantized", dequantized, limit, "RdBu_r", "weight"),
              ("error", error, error_limit, "PuOr_r", f"dequantized - original (scale ±{error_limit:.3g})")]
    for ax, (name, data, scale, cmap, label) in zip(axes, panels):
        image = ax.imshow(data.float().numpy(), cmap=cmap, vmin=-scale, vmax=scale, aspect="auto",
                          interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("input feature")
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.8).set_label(label, fontsize=8)
    axes[0].set_ylabel("output channel")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_error_vs_group_size(results: dict[str, dict[int, float]], ylabel: str = "MSE", ax=None) -> Figure:
    """Error against group size (log2 x axis, ticks at the sizes measured), one line per scheme."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.4))
    all_sizes = sorted({size for by_size in results.values() for size in by_size})
    for name, by_size in results.items():
        sizes = sorted(by_size)
        ax.plot(sizes, [by_size[s] for s in sizes], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_sizes, [str(size) for size in all_sizes])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("group size (values sharing one scale)")
    ax.set_ylabel(ylabel)
    ax.set_title("Smaller groups: less error, more scales to store")
    ax.legend(fontsize=8)
    return ax.figure


def plot_calibration_ranges(x: torch.Tensor, ranges: dict[str, tuple[float, float]], bins: int = 200,
                            ax=None, symmetric: bool = False) -> Figure:
    """Histogram of x (log count) with each calibration method's grid range drawn as its own bar.

    symmetric=True draws the grid a symmetric scheme makes from a calibrated (min, max): ±max(|min|, |max|).
    Each method gets its own band of the height, so equal ranges do not hide each other; values far outside
    the bulk (a lone outlier is one count, invisible in a histogram) are marked and the largest is labelled.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    values = x.detach().double().flatten()
    ax.hist(values.numpy(), bins=bins, color="0.75", log=True)
    ax.set_ylim(bottom=0.5)  # a bin holding one value still shows as a bar
    top = ax.get_ylim()[1]
    colours = plt.cm.tab10(np.arange(len(ranges)))
    bands = np.geomspace(top * 0.6, 1.5, len(ranges) + 2)[1:-1]  # one height per method, in log space
    for (name, (low, high)), colour, height in zip(ranges.items(), colours, bands):
        if symmetric:
            low, high = -max(abs(low), abs(high)), max(abs(low), abs(high))
        ax.plot([low, high], [height, height], color=colour, linewidth=2.5, solid_capstyle="butt",
                label=f"{name}: [{low:.2f}, {high:.2f}]")
        for edge in (low, high):
            ax.plot([edge, edge], [0.5, height], color=colour, linestyle="--", linewidth=1)
            ax.plot([edge], [height], "|", color=colour, markersize=10, markeredgewidth=2)
    median = values.median()
    spread = 1.4826 * (values - median).abs().median()  # robust sigma: outliers do not inflate it
    far = values[(values - median).abs() > 8 * spread] if spread > 0 else values[:0]
    if far.numel():
        ax.plot(far.numpy(), np.full(far.numel(), 1.0), "v", color="#d62728", markersize=7,
                label=f"{far.numel():,} value{'s' if far.numel() > 1 else ''} beyond 8 robust σ")
        extreme = far[far.abs().argmax()].item()
        ax.annotate(f"outlier {extreme:.2f}", xy=(extreme, 1.0), xytext=(0, 18), textcoords="offset points",
                    ha="right" if extreme > median else "left", fontsize=8, color="#d62728",
                    arrowprops=dict(arrowstyle="-", color="#d62728"))
    ax.set_xlabel("value")
    ax.set_ylabel("count (log scale)")
    ax.set_title("The grid range each calibration method picks" + (" (symmetric grid)" if symmetric else ""))
    ax.legend(fontsize=8, loc="center right")
    return ax.figure


def plot_module_sizes(sizes: dict[str, dict[str, int]], ax=None) -> Figure:
    """Grouped bars (MB): each top-level module's size in each version of a model (outer key: version)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    versions = list(sizes)
    modules = list(next(iter(sizes.values())))
    width = 0.8 / len(versions)
    x = np.arange(len(modules))
    for i, (version, colour) in enumerate(zip(versions, plt.cm.viridis(np.linspace(0.2, 0.8, len(versions))))):
        megabytes = [sizes[version].get(module, 0) / 1e6 for module in modules]
        bars = ax.bar(x + (i - (len(versions) - 1) / 2) * width, megabytes, width, label=version, color=colour)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, modules)
    ax.set_ylabel("size (MB)")
    ax.set_title("Size per module, before and after quantization")
    ax.legend(fontsize=8)
    return ax.figure


def plot_perplexity_vs_bits(rows: list[dict[str, object]], baseline: float | None = None, ax=None) -> Figure:
    """Scatter: perplexity against bits per linear weight, one labelled point per recipe (or method).

    Labels are placed where they overlap no other label, point or the legend (format_plots._annotate_apart).
    """
    from .format_plots import _annotate_apart

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2))
    for row in rows:
        ax.scatter(row["bits_per_weight"], row["perplexity"], s=30, zorder=3)
    if baseline is not None:
        ax.axhline(baseline, color="0.5", linestyle="--", linewidth=1, label=f"fp32 perplexity {baseline:.2f}")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xscale("log", base=2)
    ax.margins(x=0.06, y=0.12)
    ax.set_xlabel("bits per linear weight (codes + scales, log scale)")
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_title("SmolLM2-135M: quality against size")
    ax.figure.tight_layout()
    _annotate_apart(ax, [row["bits_per_weight"] for row in rows], [row["perplexity"] for row in rows],
                    [row.get("recipe", row.get("method")) for row in rows])
    return ax.figure
