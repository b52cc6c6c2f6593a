"""Interactive explorers (ipywidgets); the logic they show lives in the pure modules."""

from __future__ import annotations

import math

import ipywidgets as widgets

from .dtypes import FLOAT_LAYOUTS, decompose, describe_value, dtype_name, from_bits, resolve_dtype
from .plots import FIELD_COLOURS

__all__ = ["bit_explorer"]


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
    return widgets.VBox([widgets.HBox([dtype_box, value_box]), bits_row, report])
