import pytest

import helper
from helper.plots import FIELD_COLOURS


def _explorer_parts(explorer):
    """(dtype box, value box, bit buttons, report HTML) of a bit explorer."""
    (dtype_box, value_box), _legend, bits_row, report = explorer.children[0].children, *explorer.children[1:]
    return dtype_box, value_box, bits_row, report


def _bits(bits_row) -> str:
    return "".join(b.description for b in bits_row.children)


def test_bit_explorer_follows_typed_values_and_flipped_bits():
    explorer = helper.bit_explorer(1 / 3, "float16")
    dtype_box, value_box, bits_row, report = _explorer_parts(explorer)
    assert len(bits_row.children) == 16 and "0.333251953125" in report.value
    value_box.value = "0.1"
    assert _bits(bits_row) == helper.to_bits(0.1, "float16")
    bits_row.children[0].click()  # flip the sign bit
    assert float(value_box.value) == -helper.stored_value(0.1, "float16")
    assert _bits(bits_row) == "1" + helper.to_bits(0.1, "float16")[1:]
    dtype_box.value = "bfloat16"
    assert len(bits_row.children) == 16 and "bfloat16" in report.value
    assert _bits(bits_row) == helper.to_bits(-helper.stored_value(0.1, "float16"), "bfloat16")
    dtype_box.value = "float8_e4m3fn"
    assert len(bits_row.children) == 8
    value_box.value = "1/3"  # fractions, inf and nan can be typed too
    assert "0.34375" in report.value


@pytest.mark.parametrize("bit", ["1", "0"])
def test_bit_explorer_colours_each_field_with_a_trait_the_button_has(bit):
    # -1.5 in bf16 is 1 01111111 1000000, 1.5 is 0 01111111 1000000: every field has 0s and 1s between them
    colours = {"sign": set(), "exponent": set(), "mantissa": set()}
    for value in (-1.5, 1.5):
        _, _, bits_row, _ = _explorer_parts(helper.bit_explorer(value, "bfloat16"))
        buttons = bits_row.children
        assert all("button_color" in b.style.keys for b in buttons)  # ToggleButton's style has none: ignored
        for name, group in {"sign": buttons[:1], "exponent": buttons[1:9], "mantissa": buttons[9:]}.items():
            colours[name] |= {b.style.button_color for b in group if b.description == bit}
    assert all(len(group) == 1 for group in colours.values())  # one colour per field
    assert len(set.union(*colours.values())) == 3  # three distinct fields
    if bit == "1":
        assert colours == {name: {colour} for name, colour in FIELD_COLOURS.items()}


def test_bit_explorer_wraps_float64s_64_bits():
    explorer = helper.bit_explorer(0.1, "float64")
    _, _, bits_row, _ = _explorer_parts(explorer)
    assert len(bits_row.children) == 64 and bits_row.layout.flex_flow == "row wrap"


def test_typing_zero_after_minus_zero_updates():
    explorer = helper.bit_explorer(0.5, "float16")
    _, value_box, bits_row, report = _explorer_parts(explorer)
    value_box.value = "-0"
    assert _bits(bits_row) == "1" + "0" * 15 and "(zero)" in report.value
    value_box.value = "0"
    assert _bits(bits_row) == "0" * 16  # a FloatText would see -0.0 == 0.0 and not fire


def test_flipping_bits_into_nan_shows_nan_and_keeps_the_pattern():
    explorer = helper.bit_explorer(1.0, "float16")  # 0 01111 0000000000
    _, value_box, bits_row, report = _explorer_parts(explorer)
    bits_row.children[1].click()  # exponent 11111: infinity
    assert value_box.value == "inf" and "(inf)" in report.value and "below    = 65504.0, above = inf" in report.value
    bits_row.children[15].click()  # a mantissa bit on top: a NaN pattern
    assert value_box.value == "nan" and "(nan)" in report.value and "no neighbours" in report.value
    assert _bits(bits_row) == "0111110000000001"  # this NaN, not torch's canonical one
    bits_row.children[15].click()
    assert value_box.value == "inf"


def test_fp8_nan_has_no_minus_zero_neighbour():
    explorer = helper.bit_explorer(float("nan"), "float8_e4m3fn")
    _, value_box, bits_row, report = _explorer_parts(explorer)
    assert _bits(bits_row) == "01111111" and "(nan)" in report.value and "-0.0" not in report.value
    bits_row.children[7].click()  # 0 1111 110 = 448, the largest value
    assert value_box.value == "448.0" and "above = none (the next pattern is NaN)" in report.value


def test_bit_explorer_says_when_it_cannot_read_the_value():
    explorer = helper.bit_explorer(0.25, "float16")
    _, value_box, bits_row, report = _explorer_parts(explorer)
    value_box.value = "one third"
    assert "cannot read 'one third' as a number" in report.value and _bits(bits_row) == helper.to_bits(0.25, "fp16")


def test_playground_report_and_widget():
    import torch

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    x_hat, report = helper.playground_report(x, 4, True, "per_group", 32, "minmax")
    assert x_hat.shape == x.shape and "4-bit symmetric per_group (g=32), minmax" in report
    assert report.count("MSE") == 1
    widget = helper.quantization_playground(x)
    report, picture = widget.children[2], widget.children[3]
    first_png = bytes(picture.value)
    assert first_png.startswith(b"\x89PNG") and "4-bit symmetric per_channel" in report.value
    widget.children[0].children[0].value = 8  # move the bits slider
    assert "8-bit" in report.value and bytes(picture.value) != first_png


def _bundle(widget):
    """What IPython stores for the widget when a cell displays it (the notebook's output data)."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(widget)
    return data


def _png_size(png):
    import io

    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2]


def test_bit_explorer_stores_its_report_and_a_picture_for_readers_without_widgets():
    explorer = helper.bit_explorer(1 / 3, "bfloat16")
    data = _bundle(explorer)
    assert "application/vnd.jupyter.widget-view+json" in data  # the live view is still there
    text = data["text/plain"]
    assert text.startswith("Bit explorer (stored view") and "VBox(" not in text
    assert helper.describe_value(1 / 3, "bfloat16") in text  # the report, tags removed
    assert data["image/png"].startswith(b"\x89PNG")
    picture_height, _ = _png_size(helper.widgets._bit_layout_png(1 / 3, "bfloat16"))
    height, _ = _png_size(data["image/png"])
    assert height > picture_height  # the bit picture with the report text under it
    assert _bundle(helper.bit_explorer(1 / 3, "bfloat16"))["text/plain"] == text  # deterministic for nbval
    explorer.children[0].children[1].value = "-2.5"  # the fallback follows the current state
    assert helper.describe_value(-2.5, "bfloat16") in _bundle(explorer)["text/plain"]


def test_bit_layout_png_colours_each_field():
    import io

    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(io.BytesIO(helper.widgets._bit_layout_png(-1 / 3, "bfloat16")), format="png")
    pixels = {tuple(np.round(p[:3] * 255).astype(int)) for p in image.reshape(-1, image.shape[-1])}

    def near(colour):
        target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        blended = 255 - 0.85 * (255 - target)  # plot_bit_layout draws the boxes at alpha 0.85 on white
        return any(np.abs(np.array(p) - blended).max() <= 2 for p in pixels)

    assert all(near(colour) for colour in helper.FIELD_COLOURS.values())


def test_playground_stores_its_report_and_picture_for_readers_without_widgets():
    import torch

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    widget = helper.quantization_playground(x)
    data = _bundle(widget)
    _, report = helper.playground_report(x, 4, True, "per_channel", 32, "minmax")
    assert data["text/plain"].splitlines()[1:] == [report]
    picture_height, picture_width = _png_size(bytes(widget.children[3].value))
    height, width = _png_size(data["image/png"])
    assert width == picture_width and height > picture_height


def test_report_html_becomes_plain_text():
    assert helper.widgets._html_to_text("<b>a &lt; b</b><br>c<pre>d\ne</pre>") == "a < b\ncd\ne"


def _playground(x=None):
    import torch

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)) if x is None else x
    widget = helper.quantization_playground(x)
    (bits, symmetric, granularity), (group_size, method, percentile) = (widget.children[0].children,
                                                                        widget.children[1].children)
    controls = dict(bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size, method=method,
                    percentile=percentile)
    return widget, controls, widget.children[2], widget.children[3]


def test_playground_slider_updates_on_release_and_idle_controls_are_greyed_out():
    _, controls, _, _ = _playground()
    assert controls["bits"].continuous_update is False  # dragging 3 -> 8 does not replay every value
    assert all(getattr(c, "continuous_update", False) is False for c in controls.values())
    assert controls["group_size"].disabled and controls["percentile"].disabled
    controls["granularity"].value = "per_group"
    assert not controls["group_size"].disabled
    controls["method"].value = "percentile"
    assert not controls["percentile"].disabled
    controls["granularity"].value = "per_tensor"
    controls["method"].value = "mse"
    assert controls["group_size"].disabled and controls["percentile"].disabled


def test_playground_percentile_says_when_it_is_min_max_and_clips_when_lower():
    import torch

    x = torch.randn(16, 1536, generator=torch.Generator().manual_seed(0))
    minmax_hat, _ = helper.playground_report(x, 4, True, "per_channel", 32, "minmax")
    same_hat, same = helper.playground_report(x, 4, True, "per_channel", 32, "percentile", 99.99)
    assert torch.equal(minmax_hat, same_hat)  # 1,536 values per row: the 99.99th percentile is the max ...
    assert "clips 0 of 24,576" in same and "1,536 values per channel" in same and "this is min-max" in same
    lower_hat, lower = helper.playground_report(x, 4, True, "per_channel", 32, "percentile", 99.0)
    assert not torch.equal(minmax_hat, lower_hat) and "min-max" not in lower and "clips 419 of 24,576" in lower
    _, group = helper.playground_report(x, 4, True, "per_group", 32, "percentile", 99.0)
    assert "32 values per group" in group  # per group of 32, even the 99th percentile is the max
    _, tensor = helper.playground_report(x, 4, True, "per_tensor", 32, "percentile", 99.99)
    assert "this is min-max" not in tensor and "clips 2 of 24,576" in tensor
    _, controls, report, _ = _playground(x)
    controls["method"].value = "percentile"
    assert "this is min-max" in report.value
    controls["percentile"].value = 99.0
    assert "percentile 99:" in report.value and "this is min-max" not in report.value


def test_playground_shows_a_bad_group_size_in_its_own_report():
    import torch

    x = torch.randn(4, 48, generator=torch.Generator().manual_seed(0))
    widget, controls, report, picture = _playground(x)
    controls["granularity"].value = "per_group"  # group size 32 does not divide 48: no exception escapes
    assert "Cannot quantize with these settings: group_size 32 does not divide the last dimension 48" in report.value
    assert bytes(picture.value).startswith(b"\x89PNG")
    assert "group_size 32 does not divide" in _bundle(widget)["text/plain"]
    controls["group_size"].value = 16
    assert "Cannot" not in report.value and "(g=16)" in report.value


def test_playground_metrics_are_finite_for_huge_values():
    import math

    import torch

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)) * 1e30
    for method in ("minmax", "percentile", "mse"):
        x_hat, text = helper.playground_report(x, 4, True, "per_channel", 32, method)
        assert "inf" not in text and "nan" not in text
        error = helper.quantization_error(x, x_hat)  # float64: squares of 1e30 do not overflow
        assert math.isfinite(error["mse"]) and 15 < error["sqnr_db"] < 25
    _, mse = helper.playground_report(x, 4, True, "per_channel", 32, "mse")
    _, minmax = helper.playground_report(x, 4, True, "per_channel", 32, "minmax")
    assert mse.splitlines()[0].split(": ")[1] != minmax.split(": ")[1]  # the MSE search still searches


def test_playground_refuses_what_it_cannot_show():
    import pytest
    import torch

    for bad in (torch.randn(5), torch.zeros(2, 3, dtype=torch.int64), [[1.0]]):
        with pytest.raises(ValueError, match="x must be a non-empty 2-D floating-point tensor"):
            helper.quantization_playground(bad)
