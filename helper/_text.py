"""Plain-text tables: what the lessons print, so nbval can compare them."""

from __future__ import annotations


def text_table(header: list[str], body: list[list[str]]) -> str:
    """Columns aligned (first left, the rest right), a dashed rule under the header."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
