"""Figures and tables for lesson 09: the roofline, measured speed against the bound, and how to choose. Used in 09."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .speed import arithmetic_intensity, decode_bound_tokens_per_s, roofline

__all__ = ["plot_roofline", "plot_decode_vs_bound", "predicted_rss_bytes", "speed_table_text", "DECISION_STEPS", "plot_decision_flow"]


def plot_roofline(peak_flops: float, bandwidth: float, bytes_per_weight: dict[str, float],
                  prompt_tokens: int = 512) -> Figure:
    """Roofline (FLOP/s against FLOP/byte, log-log) with decode (1 row) and prefill (prompt_tokens rows) per format."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    intensity = torch.logspace(-1, 4, 200)
    ax.loglog(intensity, roofline(intensity, peak_flops, bandwidth) / 1e9, color="0.2", lw=2, label="roofline")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, width), color in zip(bytes_per_weight.items(), colors):
        for tokens, marker in ((1, "o"), (prompt_tokens, "s")):
            x = arithmetic_intensity(tokens, width)
            ax.scatter([x], [roofline(x, peak_flops, bandwidth) / 1e9], color=color, marker=marker, zorder=3,
                       label=f"{name}: {'decode' if tokens == 1 else f'prefill {tokens}'}")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of weights)")
    ax.set_ylabel("attainable GFLOP/s")
    ax.set_title("This machine's roofline: decode sits on the bandwidth slope, prefill on the flat roof",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_decode_vs_bound(results: list[dict], bandwidth: float) -> Figure:
    """Measured decode tokens/s of each variant beside its bandwidth bound (bars), fraction written on top."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = [r["variant"] for r in results]
    bounds = [decode_bound_tokens_per_s(r["bytes_per_token"], bandwidth) for r in results]
    measured = [r["decode_tokens_per_s"] for r in results]
    x = torch.arange(len(results)).float()
    ax.bar(x - 0.2, bounds, width=0.4, color="0.75", label="bound: bandwidth / bytes per token")
    ax.bar(x + 0.2, measured, width=0.4, color="tab:blue", label="measured decode (median)")
    for i, (bound, value) in enumerate(zip(bounds, measured)):
        ax.text(i + 0.2, value, f"{value / bound:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x.tolist(), labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("tokens per second (batch 1)")
    ax.set_yscale("log")
    ax.set_title("Decode speed against the bandwidth bound of each variant's own bytes", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def predicted_rss_bytes(result: dict) -> int:
    """A measured variant's predicted resident memory: its process baseline + its weights + its KV cache."""
    return result["baseline_rss"] + result["weight_bytes"] + result["kv_cache_bytes"]


def speed_table_text(results: list[dict], bandwidth: float) -> str:
    """One line per variant: bytes/token, bound and measured decode tokens/s, fraction, prefill, memory."""
    header = (f"{'variant':<16} {'MB/token':>8} {'bound t/s':>9} {'decode t/s':>10} {'of bound':>8} "
              f"{'prefill t/s':>11} {'peak MB':>8} {'predicted MB':>12} {'peak/pred':>9}")
    lines = [header, "-" * len(header)]
    for r in results:
        bound = decode_bound_tokens_per_s(r["bytes_per_token"], bandwidth)
        predicted = predicted_rss_bytes(r)
        lines.append(f"{r['variant']:<16} {r['bytes_per_token'] / 1e6:>8.1f} {bound:>9.1f} "
                     f"{r['decode_tokens_per_s']:>10.1f} {r['decode_tokens_per_s'] / bound:>8.0%} "
                     f"{r['prefill_tokens_per_s']:>11.1f} {r['peak_rss'] / 1e6:>8.0f} {predicted / 1e6:>12.0f} "
                     f"{r['peak_rss'] / predicted:>9.2f}")
    return "\n".join(lines)


# (question, [(answer, next step or recommendation)]): the flow chart, top to bottom.
DECISION_STEPS = [
    ("Will you train it?", [("yes", "QLoRA: NF4 base + LoRA (07), or QAT (07)"), ("no", "next")]),
    ("Where does it run?", [("CPU / laptop", "GGUF in llama.cpp: Q4_K_M, Q8_0 if it fits"), ("GPU", "next")]),
    ("Many users at once (large batch)?", [("yes", "W8A8: SmoothQuant int8 (06) or FP8 (08)"), ("no", "next")]),
    ("Accuracy budget at 4 bits?", [("tight", "GPTQ act-order / AWQ+GPTQ int4 (06)"),
                                     ("loose", "RTN int4 / NF4 (04, 05)")]),
]


def _box(ax, x: float, y: float, text: str, color: str, width: float = 2.9) -> None:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.25), width, 0.5, boxstyle="round,pad=0.05", fc=color,
                                ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def plot_decision_flow(steps: list = DECISION_STEPS) -> Figure:
    """The decision guide as a flow chart: questions on the left, each answer's recommendation to the right."""
    fig, ax = plt.subplots(figsize=(10, 1.3 * len(steps) + 0.6))
    ax.set_xlim(-1.6, 10.0)
    ax.set_ylim(-len(steps) * 1.3 + 0.5, 0.8)
    ax.axis("off")
    for row, (question, answers) in enumerate(steps):
        y = -row * 1.3
        _box(ax, 0, y, question, "#dbe9f6")
        ends = [(answer, target) for answer, target in answers if target != "next"]
        for k, (answer, target) in enumerate(ends):
            ty = y + (0.36 if len(ends) > 1 and k == 0 else -0.36 if len(ends) > 1 else 0)  # boxes apart
            _box(ax, 7.2, ty, target, "#e3f3e0", width=4.8)
            ax.annotate("", xy=(4.7, ty), xytext=(1.5, y), arrowprops=dict(arrowstyle="->", color="0.3"))
            ax.text(3.1, (y + ty) / 2 + 0.08, answer, ha="center", fontsize=8, color="tab:blue")
        for answer, target in answers:
            if target == "next" and row + 1 < len(steps):
                ax.annotate("", xy=(0, y - 1.3 + 0.3), xytext=(0, y - 0.3),
                            arrowprops=dict(arrowstyle="->", color="0.3"))
                ax.text(0.1, y - 0.65, answer, fontsize=8, color="tab:blue")
    ax.set_title("Choosing a quantization method: follow the questions down", fontsize=10)
    fig.tight_layout()
    return fig
