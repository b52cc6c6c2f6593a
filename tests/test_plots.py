import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import helper  # noqa: E402
from helper.plots import FIELD_COLOURS  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_bit_layout_has_one_box_per_bit_in_field_colours():
    fig = helper.plot_bit_layout(1 / 3, "bf16")
    boxes = fig.axes[0].patches
    assert len(boxes) == 16
    colours = [matplotlib.colors.to_hex(b.get_facecolor()) for b in boxes]
    assert colours[0] == FIELD_COLOURS["sign"] and colours[1:9] == [FIELD_COLOURS["exponent"]] * 8
    assert colours[9:] == [FIELD_COLOURS["mantissa"]] * 7
    assert [t.get_text() for t in fig.axes[0].texts] == list(helper.to_bits(1 / 3, "bf16"))
    assert "0.333984375" in fig.axes[0].get_title()


def test_value_spacing_plots_each_format():
    fig = helper.plot_value_spacing(("float16", "bfloat16"))
    assert [line.get_label() for line in fig.axes[0].lines] == ["float16 (max 65,504)", "bfloat16 (max 3.39e+38)"]


def test_value_spacing_y_axis_spans_only_the_gaps_in_view():
    # bf16's smallest subnormal gap is 2^-133; in view (x >= 2^-20) its smallest gap is 2^-27, fp16's is 2^-24
    ax = helper.plot_value_spacing(("float16", "bfloat16")).axes[0]
    low, high = ax.get_ylim()
    assert low == 2.0**-27 / 4 and high == 2.0**(20 - 7) * 4
    for line in ax.lines:
        assert line.get_xdata().min() >= 2.0**-20 and line.get_xdata().max() <= 2.0**20
    with pytest.raises(ValueError, match="xlim must be"):
        helper.plot_value_spacing(xlim=(0, 1))


def test_bytes_per_parameter_bars():
    fig = helper.plot_bytes_per_parameter()
    assert [b.get_height() for b in fig.axes[0].patches] == [4, 2, 2, 1, 1, 0.5]


def test_model_memory_bars_are_gigabytes():
    fig = helper.plot_model_memory({"7B": 7_000_000_000}, formats=("FP32", "BF16"))
    heights = sorted(b.get_height() for b in fig.axes[0].patches)
    assert heights == [14.0, 28.0]


def test_footprint_and_downcast_bars():
    fig = helper.plot_footprints({"a": {"fp32": 4_000_000, "bf16": 2_000_000}})
    assert sorted(b.get_height() for b in fig.axes[0].patches) == [2.0, 4.0]
    fig = helper.plot_downcast_cost({"a": {"fp16": 1e-4, "bf16": 1e-3}}, "error", "title")
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_title() == "title"
    assert fig.axes[0].get_ylim()[1] >= 5 * 1e-3  # headroom above the tallest bar for its label


def test_lesson_03_figures():
    import torch

    from helper import QuantScheme

    values = torch.tensor([0.0, 1.4, 3.0])
    quantized = helper.quantize_tensor(values, QuantScheme(bits=2, symmetric=False, signed=False))
    fig = helper.plot_number_line(quantized, values)
    assert [t.get_text() for t in fig.axes[0].texts][:4] == ["q=0", "q=1", "q=2", "q=3"]
    relu = torch.relu(torch.randn(1000, generator=torch.Generator().manual_seed(0)))
    fig = helper.plot_grid_on_histogram(relu, {
        "symmetric": helper.quantize_tensor(relu, QuantScheme(bits=4)),
        "asymmetric": helper.quantize_tensor(relu, QuantScheme(bits=4, symmetric=False))})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("symmetric: 8 of 16") and titles[1].startswith("asymmetric: 16 of 16")
    weight = torch.randn(4, 8)
    fig = helper.plot_quantization_heatmaps(weight, weight, title="t")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["original", "quantized -> dequantized", "error"]
    fig = helper.plot_error_vs_group_size({"int4": {32: 1e-3, 64: 2e-3}})
    assert fig.axes[0].lines[0].get_xdata().tolist() == [32, 64]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["32", "64"]  # sizes, not powers of 2
    fig = helper.plot_calibration_ranges(relu, {"minmax": (0.0, 3.0)})
    assert "minmax: [0.00, 3.00]" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_heatmaps_can_share_one_error_colour_scale():
    import torch

    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    coarse, fine = weight.round(), (weight * 4).round() / 4
    shared = max((coarse - weight).abs().max().item(), (fine - weight).abs().max().item())
    limits = [helper.plot_quantization_heatmaps(weight, w, error_limit=shared).axes[2].images[0].get_clim()
              for w in (coarse, fine)]
    assert limits[0] == limits[1] == (-shared, shared)
    own = helper.plot_quantization_heatmaps(weight, fine).axes[2].images[0].get_clim()
    assert own[1] == pytest.approx((fine - weight).abs().max().item())
    with pytest.raises(ValueError, match="error_limit must be a finite number > 0"):
        helper.plot_quantization_heatmaps(weight, fine, error_limit=0.0)


def test_calibration_plot_shows_the_symmetric_grid_and_the_outlier():
    import torch

    x = torch.randn(10_000, generator=torch.Generator().manual_seed(2))
    x[0] = 40.0
    ranges = {"minmax": (-3.70, 40.0), "percentile": (-3.70, 3.70)}
    fig = helper.plot_calibration_ranges(x, ranges, symmetric=True)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == "minmax: [-40.00, 40.00]"  # the grid a symmetric scheme makes, not the calibrated min
    assert texts[2] == "1 value beyond 8 robust σ"
    assert [t.get_text() for t in fig.axes[0].texts] == ["outlier 40.00"]
    bars = [line for line in fig.axes[0].lines if line.get_linewidth() == 2.5]
    heights = {line.get_ydata()[0] for line in bars}
    assert len(heights) == 2  # equal ranges would still be drawn at different heights
    assert fig.axes[0].get_ylim()[0] == 0.5  # a bin with one value shows on the log axis
    assert "minmax: [-3.70, 40.00]" in [t.get_text() for t in
                                        helper.plot_calibration_ranges(x, ranges).axes[0].get_legend().get_texts()]


def test_lesson_04_figures():
    fig = helper.plot_module_sizes({"before": {"a": 2_000_000, "b": 1_000_000}, "after": {"a": 500_000, "b": 0}})
    assert sorted(b.get_height() for b in fig.axes[0].patches) == [0.0, 0.5, 1.0, 2.0]
    rows = [{"recipe": "fp32", "bits_per_weight": 32.0, "perplexity": 14.9},
            {"recipe": "int4", "bits_per_weight": 5.0, "perplexity": 20.1}]
    fig = helper.plot_perplexity_vs_bits(rows, baseline=14.9)
    assert [t.get_text() for t in fig.axes[0].texts] == ["fp32", "int4"]


def test_perplexity_vs_bits_labels_do_not_overlap():
    # lesson 04's table: "int4 g32 scale+min" (6.0 bits) and "int8" (8.05) sit at the same perplexity
    table = [("fp32", 32.0, 14.94), ("bf16", 16.0, 14.93), ("int8 per-channel (ours)", 8.05, 14.96),
             ("int4 g128 symmetric (ours)", 4.31, 24.14), ("int4 g128 scale+min (ours)", 4.62, 23.49),
             ("int4 g32 symmetric (ours)", 5.0, 20.13), ("int4 g32 scale+min (ours)", 6.0, 14.94)]
    rows = [{"recipe": name, "bits_per_weight": bits, "perplexity": ppl} for name, bits, ppl in table]
    ax = helper.plot_perplexity_vs_bits(rows, baseline=14.94).axes[0]
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts] + [ax.get_legend().get_window_extent(renderer)]
    assert len(ax.texts) == len(rows)
    assert not [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert all(ax.get_window_extent(renderer).contains(b.x1, b.y1) and ax.get_window_extent(renderer).contains(
        b.x0, b.y0) for b in boxes)
