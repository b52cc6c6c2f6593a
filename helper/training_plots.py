"""Figures for lesson 07: loss curves, perplexity against training steps, how far training moves the codes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_training_curves", "plot_code_moves"]


def plot_training_curves(losses: dict[str, list[float]], evaluations: dict[str, list[tuple[int, float]]],
                         lines: dict[str, float], title: str = "") -> Figure:
    """Left: each run's training loss per step. Right: perplexity against steps, with reference lines."""
    if not losses and not evaluations:
        raise ValueError("nothing to plot: give at least one loss curve or evaluation")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, curve in losses.items():
        left.plot(range(1, len(curve) + 1), curve, marker="o", markersize=2, label=name)
    left.set_xlabel("training step")
    left.set_ylabel("KL(teacher || student), nats/token")
    left.set_title("Distillation loss (each step sees a new batch)", fontsize=10)
    left.legend(fontsize=8)
    for name, points in evaluations.items():
        steps, values = zip(*points)
        right.plot(steps, values, marker="o", markersize=3, label=name)
    for (name, value), style in zip(lines.items(), ("--", ":", "-.", (0, (1, 3)))):
        right.axhline(value, color="0.3", linestyle=style, linewidth=1, label=f"{name} ({value:.2f})")
    right.set_xlabel("training step")
    right.set_ylabel("held-out perplexity")
    right.set_title(title or "Perplexity during training", fontsize=10)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at step 2.5
    fig.tight_layout()
    return fig


def plot_code_moves(steps_moved: dict[str, torch.Tensor], title: str = "") -> Figure:
    """Histogram of (w_after - w_before) / scale per run: most weights move far less than one step."""
    if not steps_moved:
        raise ValueError("nothing to plot: give at least one run's weight changes")
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for name, moves in steps_moved.items():
        values = moves.detach().float().clamp(-2, 2)
        ax.hist(values.numpy(), bins=161, range=(-2, 2), histtype="step", label=name)
    for edge in (-0.5, 0.5):
        ax.axvline(edge, color="0.4", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("change of the latent weight, in steps of its group's scale (clipped to +-2)")
    ax.set_ylabel("number of weights")
    ax.set_title(title or "How far training moves the weights", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
