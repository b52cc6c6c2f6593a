import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from helper.training_plots import plot_code_moves, plot_training_curves  # noqa: E402


def test_training_curves_draw_every_run_and_line():
    fig = plot_training_curves({"a": [1.0, 0.5], "b": [2.0, 1.0]}, {"a": [(0, 20.0), (2, 18.0)]},
                               {"fp32": 15.0, "GPTQ": 17.0})
    left, right = fig.axes
    assert len(left.lines) == 2 and len(right.lines) == 3
    assert "fp32 (15.00)" in [t.get_text() for t in right.get_legend().get_texts()]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_training_curves({}, {}, {})


def test_code_moves_histogram():
    fig = plot_code_moves({"QAT": torch.linspace(-3, 3, 100)})
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_code_moves({})
