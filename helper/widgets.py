"""Interactive explorers (ipywidgets); the logic they show lives in the pure modules."""

from __future__ import annotations

import io
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from .dtypes import FLOAT_LAYOUTS, decompose, describe_value, dtype_name, from_bits, resolve_dtype
from .calibration import calibrate_range
from .linear_quant import QuantScheme, quantization_error, quantize_tensor
from .plots import FIELD_COLOURS

__all__ = ["bit_explorer", "quantization_playground", "playground_report"]


def bit_explorer(value: float = 1 / 3, dtype: str = "float16") -> widgets.VBox:
    """Type a number or flip bits: shows the stored value, its neighbours and the rounding error."""
    choices = [dtype_name(d) for d in FLOAT_LAYOUTS]
    dtype_box = widgets.Dropdown(options=choices, value=dtype_name(resolve_dtype(dtype)), description="dtype")
    value_box = widgets.FloatText(value=value, description="value")
    bits_row = widgets.HBox()
    report = widgets.HTML()
    updating = {"now": False}  # a bit flip sets the value box; don't let that echo back into the bits

    def field(i: int, name: str) -> str:
        layout = FLOAT_LAYOUTS[resolve_dtype(name)]
        return "sign" if i == 0 else "exponent" if i <= layout.exponent_bits else "mantissa"

    def show(x: float) -> None:
        name = dtype_box.value
        parts = decompose(x, name)
        buttons = []
        for i, bit in enumerate(parts.bits):
            button = widgets.ToggleButton(value=bit == "1", description=bit,
                                          layout=widgets.Layout(width="28px", padding="0"))
            button.style.button_color = FIELD_COLOURS[field(i, name)] if bit == "1" else "#eeeeee"
            button.observe(lambda change, i=i: flip(i), names="value")
            buttons.append(button)
        bits_row.children = buttons
        report.value = "<pre>" + describe_value(x, name) + "</pre>"

    def flip(i: int) -> None:
        bits = "".join("1" if b.value else "0" for b in bits_row.children)
        x = from_bits(bits, dtype_box.value)
        updating["now"] = True
        value_box.value = x if math.isfinite(x) else value_box.value
        updating["now"] = False
        show(x)

    def on_value(change) -> None:
        if not updating["now"]:
            show(change["new"])

    value_box.observe(on_value, names="value")
    dtype_box.observe(lambda change: show(value_box.value), names="value")
    show(value)
    return Explorer([widgets.HBox([dtype_box, value_box]), bits_row, report], report=report, name="Bit explorer",
                    picture=lambda: _bit_layout_png(value_box.value, dtype_box.value))


def playground_report(x: torch.Tensor, bits: int, symmetric: bool, granularity: str, group_size: int,
                      method: str) -> tuple[torch.Tensor, str]:
    """(dequantized x, one-line error report) for the playground's settings (pure: the widget calls it)."""
    scheme = QuantScheme(bits=bits, symmetric=symmetric, signed=True, granularity=granularity, axis=0,
                         group_size=group_size if granularity == "per_group" else None)
    clip = calibrate_range(x, scheme, method)
    x_hat = quantize_tensor(x, scheme, clip).dequantize()
    error = quantization_error(x, x_hat)
    return x_hat, (f"{bits}-bit {'symmetric' if symmetric else 'asymmetric'} {granularity}"
                   f"{f' (g={group_size})' if granularity == 'per_group' else ''}, {method}: "
                   f"MSE {error['mse']:.3e}, max |error| {error['max_abs']:.3e}, SQNR {error['sqnr_db']:.1f} dB")


def quantization_playground(x: torch.Tensor) -> widgets.VBox:
    """Bits, symmetric/asymmetric, granularity and calibration on a 2-D tensor: live histogram and error numbers."""
    controls = {
        "bits": widgets.IntSlider(value=4, min=2, max=8, description="bits"),
        "symmetric": widgets.Checkbox(value=True, description="symmetric"),
        "granularity": widgets.Dropdown(options=["per_tensor", "per_channel", "per_group"], value="per_channel",
                                        description="granularity"),
        "group_size": widgets.Dropdown(options=[16, 32, 64, 128], value=32, description="group size"),
        "method": widgets.Dropdown(options=["minmax", "percentile", "mse"], value="minmax", description="range"),
    }
    report = widgets.HTML()
    picture = widgets.Image(format="png")

    def draw(change=None) -> None:
        # Render to PNG bytes inside the widget: no display messages, so the stored notebook and a
        # re-run under nbval see the same cell output.
        x_hat, text = playground_report(x, **{name: control.value for name, control in controls.items()})
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), layout="constrained")
        axes[0].hist(x.flatten().numpy(), bins=120, color="0.7", label="original")
        axes[0].hist(x_hat.flatten().numpy(), bins=120, histtype="step", color="#d62728", label="dequantized")
        axes[0].set_xlabel("value")
        axes[0].set_ylabel("count")
        axes[0].legend(fontsize=8)
        axes[1].hist((x_hat - x).flatten().numpy(), bins=120, color="#1f77b4")
        axes[1].set_xlabel("error (dequantized - original)")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        picture.value = buffer.getvalue()
        report.value = f"<b>{text}</b>"

    for control in controls.values():
        control.observe(draw, names="value")
    draw()
    return Explorer([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]),
                     report, picture],
                    report=report, picture=lambda: bytes(picture.value), name="Quantization playground")


class Explorer(widgets.VBox):
    """A VBox that still shows something true where widgets do not run (untrusted or never-run notebook, web viewer).

    Its display bundle keeps the live widget view and adds `text/plain` (the report text) and `image/png`
    (a picture of the current view with the report under it): JupyterLab falls back to the PNG when it
    may not render widgets, and nbval compares the text, so the text is as deterministic as the report.
    """

    def __init__(self, children, *, report: widgets.HTML, picture, name: str, **kwargs):
        super().__init__(children, **kwargs)
        self._report, self._picture, self._name = report, picture, name

    def fallback_text(self) -> str:
        """What a reader without live widgets reads: a one-line header, then the report as plain text."""
        return f"{self._name} (stored view; run the notebook to use the controls)\n{_html_to_text(self._report.value)}"

    def fallback_png(self) -> bytes:
        """PNG of the current view (the explorer's own picture) with the report text under it."""
        return _picture_with_text(self._picture(), self.fallback_text())

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data.update({"text/plain": self.fallback_text(), "image/png": self.fallback_png()})
        return data


def _html_to_text(markup: str) -> str:
    """The report widget's HTML as plain text: <br> and block ends become newlines, tags go, entities decode."""
    import html
    import re

    text = re.sub(r"(?i)<br\s*/?>|</(p|div|pre|li|tr)>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip("\n")


def _bit_layout_png(value: float, dtype: str) -> bytes:
    """plot_bit_layout's picture (bits coloured by field) as PNG bytes, drawn off pyplot so nothing else displays."""
    from matplotlib.figure import Figure

    from .plots import plot_bit_layout

    bits = FLOAT_LAYOUTS[resolve_dtype(dtype)].bits
    figure = Figure(figsize=(max(4.0, 0.32 * bits + 1), 1.6), dpi=100, layout="constrained")
    plot_bit_layout(value, dtype, ax=figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _picture_with_text(picture: bytes, text: str) -> bytes:
    """The picture, pixel for pixel, above the text in monospace: one PNG a notebook viewer can show."""
    import matplotlib.image
    from matplotlib.figure import Figure

    image = matplotlib.image.imread(io.BytesIO(picture), format="png")
    height, width = image.shape[:2]
    lines = text.splitlines() or [""]
    line_px, pad = 15, 8
    text_px = line_px * len(lines) + 2 * pad
    width = max(width, 7 * max(len(line) for line in lines) + 2 * pad)  # ~6.6 px per 9-pt monospace character
    figure = Figure(figsize=(width / 100, (height + text_px) / 100), dpi=100)
    figure.figimage(image, xo=0, yo=text_px)
    for i, line in enumerate(lines):
        figure.text(pad / width, 1 - (height + pad + line_px * (i + 0.5)) / (height + text_px), line,
                    family="monospace", fontsize=9, va="center", color="0.35" if i == 0 else "black")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
