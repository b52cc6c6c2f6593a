"""Interactive explorers (ipywidgets); the logic they show lives in the pure modules."""

from __future__ import annotations

import html
import io
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from .dtypes import FLOAT_LAYOUTS, _describe_bits, describe_value, dtype_name, from_bits, resolve_dtype, to_bits
from .calibration import calibrate_range
from .linear_quant import QuantScheme, quantization_error, quantize_tensor, to_rows
from .plots import FIELD_COLOURS

__all__ = ["bit_explorer", "quantization_playground", "playground_report"]


def _tint(colour: str, white: float = 0.72) -> str:
    """colour mixed with white (white = 0.72: 72 % white): a field's pale shade for its 0 bits."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * white):02x}" for c in (red, green, blue))


def _parse_number(text: str) -> float:
    """A typed number: 0.1, -0, 1e-8, inf, nan, or a fraction like 1/3; ValueError if it is none of these."""
    from fractions import Fraction

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return float(Fraction(text.replace(" ", "")))  # raises ValueError for anything else


def bit_explorer(value: float = 1 / 3, dtype: str = "float16") -> widgets.VBox:
    """Type a number or click bits to flip them: shows the stored value, its neighbours and the rounding error.

    Each bit is a button coloured by field (FIELD_COLOURS: sign, exponent, mantissa; 1 bits dark, 0 bits
    pale); the value box takes 0.1, -0, 1e-8, inf, nan or 1/3 (Enter to apply). A flipped pattern is kept
    exactly, NaN patterns included, and the value box shows what it stores.
    """
    choices = [dtype_name(d) for d in FLOAT_LAYOUTS]
    dtype_box = widgets.Dropdown(options=choices, value=dtype_name(resolve_dtype(dtype)), description="dtype")
    value_box = widgets.Text(value=repr(float(value)), description="value", continuous_update=False,
                             placeholder="0.1, -0, 1e-8, inf, nan, 1/3")
    legend = widgets.HTML(" ".join(
        f"<span style='background:{colour};color:white;padding:0 6px'>{name}</span>"
        for name, colour in FIELD_COLOURS.items()) + "&nbsp; click a bit to flip it (1 = dark, 0 = pale)")
    bits_row = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))  # float64's 64 bits wrap
    report = widgets.HTML()
    state = {"bits": "", "updating": False}  # the pattern shown; `updating` stops a flip echoing back

    def field(i: int) -> str:
        layout = FLOAT_LAYOUTS[resolve_dtype(dtype_box.value)]
        return "sign" if i == 0 else "exponent" if i <= layout.exponent_bits else "mantissa"

    def show(bits: str, typed: float | None = None) -> None:
        name = resolve_dtype(dtype_box.value)
        layout = FLOAT_LAYOUTS[name]
        field_ends = {0, layout.exponent_bits}  # a gap after the sign and after the exponent
        buttons = []
        for i, bit in enumerate(bits):
            colour = FIELD_COLOURS[field(i)]
            button = widgets.Button(description=bit, tooltip=f"bit {layout.bits - 1 - i}: {field(i)}",
                                    layout=widgets.Layout(width="28px", padding="0",
                                                          margin="2px 8px 2px 1px" if i in field_ends else "2px 1px"))
            button.style.button_color = colour if bit == "1" else _tint(colour)
            button.style.text_color = "white" if bit == "1" else colour
            button.style.font_weight = "bold"
            button.on_click(lambda _, i=i: flip(i))
            buttons.append(button)
        state["bits"] = bits
        bits_row.children = buttons
        text = describe_value(typed, name) if typed is not None else "\n".join(_describe_bits(bits, name))
        report.value = "<pre>" + html.escape(text) + "</pre>"

    def flip(i: int) -> None:
        bits = state["bits"]
        bits = bits[:i] + ("0" if bits[i] == "1" else "1") + bits[i + 1:]
        x = from_bits(bits, dtype_box.value)
        state["updating"] = True
        value_box.value = repr(x)  # 'nan', 'inf', '-0.0' or the exact stored value: never a stale number
        state["updating"] = False
        show(bits)

    def on_value(change) -> None:
        if state["updating"]:
            return
        try:
            x = _parse_number(change["new"])
        except (ValueError, ZeroDivisionError):
            report.value = (f"<pre style='color:#b00000'>cannot read {html.escape(change['new'])!r} as a number: "
                            "type e.g. 0.1, -0, 1e-8, inf, nan or 1/3</pre>")
            return
        show(to_bits(x, dtype_box.value), typed=x)

    def on_dtype(change) -> None:
        try:
            x = _parse_number(value_box.value)
        except (ValueError, ZeroDivisionError):
            x = from_bits(state["bits"], change["old"])
        show(to_bits(x, change["new"]), typed=x)

    value_box.observe(on_value, names="value")
    dtype_box.observe(on_dtype, names="value")
    show(to_bits(value, dtype_box.value), typed=float(value))
    return Explorer([widgets.HBox([dtype_box, value_box]), legend, bits_row, report], report=report,
                    name="Bit explorer",
                    picture=lambda: _bit_layout_png(from_bits(state["bits"], dtype_box.value), dtype_box.value))


PLAYGROUND_PERCENTILES = (90.0, 99.0, 99.9, 99.99)


def _percentile_is_max(row_size: int, percentile: float) -> bool:
    """True when calibrate_range's percentile of a row of row_size values is its max (and min): nothing clipped."""
    return round(percentile / 100 * row_size) >= row_size and round((100 - percentile) / 100 * row_size) <= 1


def playground_report(x: torch.Tensor, bits: int, symmetric: bool, granularity: str, group_size: int,
                      method: str, percentile: float = 99.99) -> tuple[torch.Tensor, str]:
    """(dequantized x, error report) for the playground's settings (pure: the widget calls it).

    The report's first line names the settings and gives MSE, max |error| and SQNR (float64); a second line
    says how many values the range clips, and when percentile clipping is the same as min-max for this row size.
    """
    scheme = QuantScheme(bits=bits, symmetric=symmetric, signed=True, granularity=granularity, axis=0,
                         group_size=group_size if granularity == "per_group" else None)
    clip = calibrate_range(x, scheme, method, percentile=percentile)
    x_hat = quantize_tensor(x, scheme, clip).dequantize()
    error = quantization_error(x, x_hat)
    method_name = f"percentile {percentile:g}" if method == "percentile" else method
    text = (f"{bits}-bit {'symmetric' if symmetric else 'asymmetric'} {granularity}"
            f"{f' (g={group_size})' if granularity == 'per_group' else ''}, {method_name}: "
            f"MSE {error['mse']:.3e}, max |error| {error['max_abs']:.3e}, SQNR {error['sqnr_db']:.1f} dB")
    if method == "minmax":
        return x_hat, text
    rows = to_rows(x.detach().double(), scheme)  # (rows, row_size): one range per row
    low, high = clip[0].double(), clip[1].double()
    if symmetric:
        high = torch.maximum(low.abs(), high.abs())
        low = -high
    clipped = int(((rows < low) | (rows > high)).sum())
    text += f"\n{method_name} clips {clipped:,} of {rows.numel():,} values ({100 * clipped / rows.numel():.2f} %)"
    if method == "percentile" and _percentile_is_max(rows.shape[1], percentile):
        unit = {"per_tensor": "in the tensor", "per_channel": "per channel", "per_group": "per group"}[granularity]
        text += (f": with {rows.shape[1]:,} values {unit}, the {percentile:g}th percentile is the max, "
                 f"so this is min-max; pick a lower percentile")
    return x_hat, text


def _message_png(message: str) -> bytes:
    """A small PNG that shows message: the playground's picture when the settings cannot be quantized."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 1.2), dpi=100)
    figure.text(0.02, 0.5, message, color="#b00000", fontsize=10, va="center", wrap=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def quantization_playground(x: torch.Tensor) -> widgets.VBox:
    """Bits, symmetric/asymmetric, granularity and calibration on a 2-D tensor: live histogram and error numbers.

    Controls that do nothing in the current setting are greyed out (group size unless per_group, the
    percentile unless the range is percentile); the slider updates on release. A setting that cannot be
    quantized (a group size that does not divide the rows) shows its error in the widget's own report.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty 2-D floating-point tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    controls = {
        "bits": widgets.IntSlider(value=4, min=2, max=8, description="bits", continuous_update=False),
        "symmetric": widgets.Checkbox(value=True, description="symmetric"),
        "granularity": widgets.Dropdown(options=["per_tensor", "per_channel", "per_group"], value="per_channel",
                                        description="granularity"),
        "group_size": widgets.Dropdown(options=[16, 32, 64, 128], value=32, description="group size",
                                       disabled=True),
        "method": widgets.Dropdown(options=["minmax", "percentile", "mse"], value="minmax", description="range"),
        "percentile": widgets.Dropdown(options=list(PLAYGROUND_PERCENTILES), value=99.99, description="percentile",
                                       disabled=True),
    }
    report = widgets.HTML()
    picture = widgets.Image(format="png")

    def grey_out(change=None) -> None:
        controls["group_size"].disabled = controls["granularity"].value != "per_group"
        controls["percentile"].disabled = controls["method"].value != "percentile"

    def draw(change=None) -> None:
        # Render to PNG bytes inside the widget: no display messages, so the stored notebook and a
        # re-run under nbval see the same cell output.
        try:
            x_hat, text = playground_report(x, **{name: control.value for name, control in controls.items()})
        except (ValueError, TypeError) as error:  # shown in the widget: a callback's exception is silent in a browser
            report.value = f"<b style='color:#b00000'>Cannot quantize with these settings: {error}</b>"
            picture.value = _message_png(f"Cannot quantize with these settings:\n{error}")
            return
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), layout="constrained")
        axes[0].hist(x.flatten().numpy(), bins=120, color="0.7", label="original")
        axes[0].hist(x_hat.flatten().numpy(), bins=120, histtype="step", color="#d62728", label="dequantized")
        axes[0].set_xlabel("value")
        axes[0].set_ylabel("count")
        axes[0].legend(fontsize=8)
        axes[1].hist((x_hat - x).flatten().numpy(), bins=120, color="#1f77b4")
        axes[1].set_xlabel("error (dequantized - original)")
        axes[1].set_ylabel("count")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        picture.value = buffer.getvalue()
        report.value = "<b>" + text.replace("\n", "</b><br>") + ("" if "\n" in text else "</b>")

    controls["granularity"].observe(grey_out, names="value")  # registered first: grey out, then draw
    controls["method"].observe(grey_out, names="value")
    for control in controls.values():
        control.observe(draw, names="value")
    grey_out()
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
