import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helper.codebooks import bin_counts, bnb_fp4_codebook, nf4_codebook  # noqa: E402
from helper.format_plots import (LLAMA_CPP_7B_TRADEOFFS, _annotate_apart, _spread_apart,  # noqa: E402
                                 plot_code_usage, plot_codebook_bins, plot_gguf_tradeoffs, plot_q4_1_block)
from helper.gguf_io import quantize_q4_0, split_block  # noqa: E402


def _labelled(fig):
    assert fig.axes[0].get_title() or fig._suptitle is not None
    plt.close(fig)


def overlapping(texts):
    """Pairs of texts whose drawn boxes overlap (empty when every label is readable)."""
    renderer = texts[0].figure.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def _normalized_gaussian_blocks():
    blocks = torch.randn(2**14, generator=torch.Generator().manual_seed(0)).reshape(-1, 64)
    return blocks / blocks.abs().amax(dim=1, keepdim=True)


def test_spread_apart_moves_crowded_positions_the_least():
    assert _spread_apart([0, 0, 5], 1) == [-0.5, 0.5, 5]
    assert _spread_apart([0, 2, 4], 1) == [0, 2, 4]  # already apart: unchanged
    spread = _spread_apart([3.0, 0.0, 0.1, 0.2, 0.25], 0.5)
    assert spread[0] == 3.0
    ordered = sorted(spread[1:])
    assert ordered == spread[1:]  # order kept
    assert min(b - a for a, b in zip(ordered, ordered[1:])) >= 0.5 - 1e-9
    assert np.mean(spread[1:]) == pytest.approx(np.mean([0.0, 0.1, 0.2, 0.25]))  # centred on the cluster
    with pytest.raises(ValueError, match="gap must be >= 0"):
        _spread_apart([0], -1)


def test_annotate_apart_rejects_mismatched_lengths():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="same length"):
        _annotate_apart(ax, [1, 2], [1], ["a", "b"])
    plt.close(fig)


@pytest.mark.parametrize("codebook", [bnb_fp4_codebook(), nf4_codebook()], ids=["fp4-bnb", "nf4"])
def test_codebook_figures_show_levels_and_readable_counts(codebook):
    x = _normalized_gaussian_blocks()
    fig = plot_codebook_bins(x, codebook, "a codebook")
    ax = fig.axes[0]
    levels = codebook.unique().numel()
    assert sum(int(t.get_text()) for t in ax.texts) == x.numel()
    assert len(ax.texts) == levels
    assert not overlapping(ax.texts)  # FP4's levels 0 and +-0.0052 sit a pixel apart: their counts may not
    assert "absmax" in ax.get_xlabel()
    _labelled(fig)


def test_code_usage_has_integer_level_ticks():
    x = _normalized_gaussian_blocks()
    fig = plot_code_usage({"NF4": bin_counts(x, nf4_codebook()), "FP4": bin_counts(x, bnb_fp4_codebook())})
    assert fig.axes[0].get_ylabel() == "share of weights"
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    _labelled(fig)


def test_q4_1_block_figure_labels_do_not_overlap():
    raw = np.frombuffer(bytes(range(20)), dtype=np.uint8)
    values = np.linspace(-0.73, 1.17, 32, dtype=np.float32)
    fields = {"d": 0.126831, "m": -0.730469, "codes": list(range(16)) * 2, "values": values}
    fig = plot_q4_1_block(fields, raw)
    top, bottom = fig.axes
    assert len(top.texts) == 20 and len(bottom.texts) == 32
    fig.canvas.draw()
    ticks = top.get_xticklabels()
    assert "0.12683" in ticks[0].get_text() and "-0.73047" in ticks[1].get_text()
    assert not overlapping(ticks)
    assert not overlapping(bottom.texts)
    _labelled(fig)
    assert split_block(quantize_q4_0(np.ones(32, dtype=np.float32))[:18], "Q4_0")["codes"][0] == 0


def test_gguf_tradeoffs_put_f16_at_zero_on_a_symlog_axis_with_readable_labels():
    fig = plot_gguf_tradeoffs()
    ax = fig.axes[0]
    assert len(ax.collections) == len(LLAMA_CPP_7B_TRADEOFFS)
    assert "Source" in ax.get_title()
    assert ax.get_yscale() == "symlog"  # a log axis cannot show F16's increase of exactly 0
    plotted = {tuple(c.get_offsets()[0]) for c in ax.collections}
    assert plotted == {(float(s), float(i)) for s, i in LLAMA_CPP_7B_TRADEOFFS.values()}  # true values, no stand-in
    assert ax.get_ylim()[0] < 0 < ax.get_ylim()[1]
    assert sorted(t.get_text() for t in ax.texts) == sorted(LLAMA_CPP_7B_TRADEOFFS)
    assert not overlapping(ax.texts)
    _labelled(fig)
