"""Figures for lesson 06: AWQ's salient channels, GPTQ's error feedback, layer sensitivity. Used in 06."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["plot_salient_channels", "plot_gptq_columns", "plot_sensitivity", "plot_layer_sensitivity",
           "plot_smoothing"]


def plot_salient_channels(x_scale: torch.Tensor, losses: dict[float, float], title: str = "") -> Figure:
    """Left: mean |x_j| per input channel (the top 1 % marked). Right: AWQ's output error against alpha."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    values = x_scale.float()
    top = values >= torch.quantile(values, 0.99)
    channels = torch.arange(values.numel())
    left.bar(channels[~top], values[~top], width=1.0, color="tab:blue", label="other channels")
    left.bar(channels[top], values[top], width=3.0, color="tab:red", label=f"top 1 % ({int(top.sum())} channels)")
    left.set_xlabel("input channel j")
    left.set_ylabel("mean |x_j| over calibration tokens")
    left.set_title(f"Activation magnitude per channel{': ' + title if title else ''}", fontsize=10)
    left.legend(fontsize=8)
    alphas, errors = zip(*sorted(losses.items()))
    best = min(losses, key=losses.get)
    right.plot(alphas, errors, marker="o", markersize=3)
    right.scatter([best], [losses[best]], color="tab:red", zorder=3, label=f"best alpha = {best:.2f}")
    right.scatter([0.0], [losses[0.0]], color="0.3", zorder=3, label="alpha = 0: plain RTN")
    right.set_xlabel("alpha (s = s_x ** alpha)")
    right.set_ylabel("mean squared output error")
    right.set_title("AWQ's grid search for this layer group", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gptq_columns(errors_rtn: torch.Tensor, errors_gptq: torch.Tensor, title: str = "") -> Figure:
    """Per-output-channel output error of RTN and GPTQ for one layer, sorted by the RTN error."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    order = torch.argsort(errors_rtn, descending=True)
    ax.plot(errors_rtn[order], label=f"RTN (mean {errors_rtn.mean():.3g})")
    ax.plot(errors_gptq[order], label=f"GPTQ (mean {errors_gptq.mean():.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("output channel (sorted by RTN error)")
    ax.set_ylabel("mean squared output error")
    ax.set_title(title or "Output error per channel on held-out tokens", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sensitivity(sensitivity: dict[str, float], allocation: dict[str, int] | None = None) -> Figure:
    """Horizontal bars: KL when only this unit is int4; units the allocation gives 8 bits are highlighted."""
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(sensitivity) + 1.2))
    names = list(sensitivity)
    colours = ["tab:red" if allocation and allocation.get(n) == 8 else "tab:blue" for n in names]
    ax.barh(names, [sensitivity[n] for n in names], color=colours)
    ax.invert_yaxis()
    ax.set_xlabel("KL(fp32 || only this unit in int4), nats per token")
    ax.set_title("Which layers suffer most from 4 bits" + (" (red: given 8 bits)" if allocation else ""), fontsize=10)
    fig.tight_layout()
    return fig


def plot_layer_sensitivity(sensitivity: dict[str, float], int8_layers: tuple[str, ...] = (),
                           title: str = "") -> Figure:
    """Sensitivity of every linear layer against its block index, one line per layer type (log scale);
    the layers kept in int8 are circled in red. Names as model.named_modules(): "model.layers.11.mlp.down_proj"."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    by_type: dict[str, list[tuple[int, float]]] = {}
    for name, value in sensitivity.items():
        parts = name.split(".")
        index = next(i for i, part in enumerate(parts) if part.isdigit())
        by_type.setdefault(".".join(parts[index + 1:]), []).append((int(parts[index]), value))
    for layer_type, points in by_type.items():
        blocks, values = zip(*sorted(points))
        ax.plot(blocks, values, marker="o", markersize=3, linewidth=1, label=layer_type)
    chosen = [(int(next(p for p in n.split(".") if p.isdigit())), sensitivity[n]) for n in int8_layers]
    if chosen:
        ax.scatter(*zip(*chosen), s=120, facecolors="none", edgecolors="tab:red", linewidths=1.5, zorder=3,
                   label=f"kept in int8 ({len(chosen)})")
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel("estimated loss increase in int4 (nats)")
    ax.set_title(title or "Which linear layers suffer most from 4 bits", fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def plot_smoothing(act_before: torch.Tensor, weight_before: torch.Tensor, act_after: torch.Tensor,
                   weight_after: torch.Tensor, title: str = "") -> Figure:
    """Per-input-channel max|X| and max|W| before (left) and after (right) SmoothQuant's scaling."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, act, weight, when in ((axes[0], act_before, weight_before, "before"),
                                  (axes[1], act_after, weight_after, "after")):
        channels = torch.arange(act.numel())
        ax.plot(channels, act.float(), linewidth=0.8, label=f"max |X_j| (peak {act.max():.1f})")
        ax.plot(channels, weight.float(), linewidth=0.8, label=f"max |W_j| (peak {weight.max():.2f})")
        ax.set_yscale("log")
        ax.set_xlabel("input channel j")
        ax.set_title(f"{when} smoothing", fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("maximum magnitude (log scale)")
    fig.suptitle(title or "SmoothQuant moves the activation outliers into the weights", fontsize=11)
    fig.tight_layout()
    return fig
