import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from helper.method_plots import (plot_gptq_columns, plot_layer_sensitivity, plot_salient_channels,  # noqa: E402
                                plot_sensitivity, plot_smoothing)


def test_method_figures_have_titles_labels_and_data():
    fig = plot_salient_channels(torch.rand(200), {0.0: 2.0, 0.5: 1.0, 0.9: 1.5})
    assert "best alpha = 0.50" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert all(ax.get_title() and ax.get_xlabel() for ax in fig.axes)
    plt.close(fig)
    fig = plot_gptq_columns(torch.rand(10) + 1, torch.rand(10))
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = plot_sensitivity({"a": 0.1, "b": 0.3}, {"a": 4, "b": 8})
    colours = [tuple(p.get_facecolor()) for p in fig.axes[0].patches]
    assert colours[0] != colours[1] and "KL" in fig.axes[0].get_xlabel()
    plt.close(fig)
    fig = plot_smoothing(torch.rand(8) * 50, torch.rand(8), torch.rand(8) * 5, torch.rand(8) * 2)
    assert [ax.get_title() for ax in fig.axes] == ["before smoothing", "after smoothing"]
    plt.close(fig)


def test_layer_sensitivity_draws_one_line_per_layer_type_and_circles_the_int8_layers():
    sensitivity = {f"model.layers.{b}.{t}": 0.1 * (b + 1) * (3 if t == "mlp.down_proj" else 1)
                   for b in range(3) for t in ("self_attn.q_proj", "mlp.down_proj")}
    fig = plot_layer_sensitivity(sensitivity, ("model.layers.2.mlp.down_proj",))
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["self_attn.q_proj", "mlp.down_proj"]
    assert list(ax.lines[1].get_xdata()) == [0, 1, 2] and ax.get_yscale() == "log"
    circled = ax.collections[0].get_offsets()
    assert circled.tolist() == [[2.0, sensitivity["model.layers.2.mlp.down_proj"]]]
    assert "kept in int8 (1)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
