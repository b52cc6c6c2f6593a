"""Every lesson as a learner sees it in JupyterLab: stored outputs render, and the widgets work when run."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

import helper

NOTEBOOKS = sorted(Path(os.environ.get("QF_NOTEBOOKS", Path(__file__).resolve().parents[2] / "notebooks"))
                   .glob("*.ipynb"))  # the same lessons conftest serves
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLACEHOLDERS = ("VBox(children=", "HBox(children=", "Error displaying widget", "Traceback (most recent call last)")
RUN_S = 600  # running a whole lesson on a busy 2-core machine


def _cells(notebook):
    return json.loads(notebook.read_text())["cells"]


PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")  # tqdm's repr: "distil: 0%|  | 0/4 [00:00<?, ?it/s]"


def _is_lesson_widget(output) -> bool:
    """A stored widget the lesson teaches with; a tqdm progress bar (also a widget) is not one."""
    data = output.get("data", {})
    return WIDGET_MIME in data and not PROGRESS_BAR.search("".join(data.get("text/plain", "")))


def _widget_cells(notebook) -> list[int]:
    """Indices of the cells whose stored output is a lesson widget."""
    return [i for i, cell in enumerate(_cells(notebook)) if cell["cell_type"] == "code"
            and any(_is_lesson_widget(output) for output in cell["outputs"])]


def _stored_images(notebook) -> int:
    """How many stored outputs are plain pictures (a widget's picture counts only where widgets don't render)."""
    return sum("image/png" in output.get("data", {}) and WIDGET_MIME not in output["data"]
               for cell in _cells(notebook) if cell["cell_type"] == "code" for output in cell["outputs"])


def _lesson(stem):
    return next(n for n in NOTEBOOKS if n.name.startswith(stem))


def _served(page, notebook):
    """The server's copy of the lesson, as it was when the session started (notebooks/ may change meanwhile:
    other work re-executes lessons). All copies start equal; trusted/ is never run, so it keeps its outputs."""
    return page.lab.root / "trusted" / notebook.name


WIDGET_LESSONS = [n for n in NOTEBOOKS if _widget_cells(n)]


def open_lesson(page, folder, notebook):
    """Open the lesson in Lab and wait until every cell is in the DOM and every output picture has loaded."""
    page.goto(folder, notebook)
    notebook = _served(page, notebook)
    cells = page.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    expect(cells).to_have_count(len(_cells(notebook)))
    page.page.wait_for_function(
        """n => { const imgs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')];
                  return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0
                                                          && i.getBoundingClientRect().height > 0); }""",
        arg=_stored_images(notebook))
    return cells


def output_text(page) -> str:
    return page.page.locator(".jp-Notebook").inner_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda n: n.name[:2])
def test_stored_lesson_renders(running, page, notebook):
    """A trusted lesson, not run: figures load with a real size; widgets render from their stored state."""
    cells = open_lesson(page, "trusted", notebook)
    notebook = _served(page, notebook)
    text = output_text(page)
    assert not [p for p in PLACEHOLDERS if p in text]
    for index in _widget_cells(notebook):
        widget = cells.nth(index).locator(".jp-OutputArea-output .widget-vbox").first
        expect(widget).to_be_visible()
        page.screenshot(f"{notebook.name[:2]}_stored_widget_trusted", widget)
    page.screenshot(f"{notebook.name[:2]}_stored_top")
    figures = page.page.locator(".jp-Notebook .jp-OutputArea-output:has(> img)")
    if figures.count():
        page.screenshot(f"{notebook.name[:2]}_stored_first_figure", figures.first)
    page.assert_clean()


@pytest.mark.parametrize("notebook", WIDGET_LESSONS, ids=lambda n: n.name[:2])
def test_untrusted_lesson_shows_each_widget_as_a_picture(running, page, notebook):
    """A fresh clone (not trusted): Lab may not render widgets, so it must show the stored picture, not the repr."""
    cells = open_lesson(page, "untrusted", notebook)
    notebook = _served(page, notebook)
    assert not [p for p in PLACEHOLDERS if p in output_text(page)]
    for index in _widget_cells(notebook):
        output = cells.nth(index).locator(".jp-OutputArea-output").first
        expect(output).to_have_attribute("data-mime-type", "image/png")  # the stored picture, not the repr
        picture = output.locator("img")
        expect(picture).to_be_visible()
        assert output.locator(".jupyter-widgets").count() == 0
        width, height = picture.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert width > 300 and height > 100
        page.screenshot(f"{notebook.name[:2]}_stored_widget_untrusted", output)
    page.assert_clean()


def _menu(page, menu: str, item: str) -> None:
    page.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


class RunningLesson:
    """A lesson that Run All Cells is executing in its own page, while other tests go on."""

    def __init__(self, page, notebook):
        self.page, self.notebook = page, notebook
        self.cells = open_lesson(page, "running", notebook)
        self.code = [i for i, c in enumerate(_cells(_served(page, notebook)))
                     if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        _menu(page, "Edit", "Clear Outputs of All Cells")
        expect(self.cells.nth(self.code[-1]).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[ ?\]:"))
        _menu(page, "Run", "Run All Cells")
        self.started = time.monotonic()

    def wait(self):
        """Wait until every code cell has run, in order, without an error; return the cells."""
        last_prompt = self.cells.nth(self.code[-1]).locator(".jp-InputPrompt")
        while last_prompt.inner_text().strip() != f"[{len(self.code)}]:":
            text = output_text(self.page)
            assert "Traceback (most recent call last)" not in text and "Error displaying widget" not in text, \
                text[max(0, text.find("Traceback") - 2000):][:4000]
            assert time.monotonic() - self.started < RUN_S, f"{self.notebook.name} did not finish in {RUN_S} s"
            time.sleep(1)
        prompts = [p.strip() for p in self.cells.locator(".jp-InputPrompt").all_inner_texts()]
        assert [p for p in prompts if re.fullmatch(r"\[\d+\]:", p)] == [f"[{n + 1}]:" for n in range(len(self.code))]
        assert not [p for p in PLACEHOLDERS if p in output_text(self.page)]
        return self.cells


@pytest.fixture(scope="module")
def running(page_factory):
    """The widget lessons, each running all its cells in its own page from the first test on (they take minutes)."""
    lessons = {}
    try:
        for notebook in WIDGET_LESSONS:
            lessons[notebook.name[:2]] = RunningLesson(page_factory(), notebook)
        yield lessons
    finally:
        for lesson in lessons.values():
            lesson.page.close()


def _timed(label: str, timings: dict, action, wait) -> None:
    """Do the action, wait for its visible effect, and note how long the learner waited."""
    start = time.monotonic()
    action()
    wait()
    timings[label] = round(time.monotonic() - start, 2)


def _save_timings(name: str, timings: dict) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"{name}_timings.json").write_text(json.dumps(timings, indent=1) + "\n")


def _bits(widget) -> list[dict]:
    """The bit buttons in order: their label and computed background colour."""
    return widget.evaluate("""w => [...w.querySelectorAll('button')]
        .filter(b => /^[01]$/.test(b.innerText.trim()))
        .map(b => ({bit: b.innerText.trim(), colour: getComputedStyle(b).backgroundColor}))""")


def _field(i: int, dtype: str) -> str:
    layout = helper.FLOAT_LAYOUTS[helper.resolve_dtype(dtype)]
    return "sign" if i == 0 else "exponent" if i <= layout.exponent_bits else "mantissa"


def test_bit_explorer_in_a_running_lesson(running):
    """Run lesson 01; type a value, flip a bit, change the format: the bits and the report follow, in colour."""
    page = running["01"].page
    notebook = _served(page, _lesson("01"))
    cells = running["01"].wait()
    (index,) = _widget_cells(notebook)
    widget = cells.nth(index).locator(".jp-OutputArea-output .widget-vbox").first
    expect(widget).to_be_visible()
    report = widget.locator(".widget-html", has_text="stored").first
    dtype_box, value_box = widget.locator("select").first, widget.locator("input").first
    timings = {}

    def shows(value, dtype):
        def wait():
            page.page.wait_for_function("([w, bits]) => [...w.querySelectorAll('button')].map(b => b.innerText.trim())"
                                        ".filter(t => /^[01]$/.test(t)).join('') === bits",
                                        arg=[widget.element_handle(), helper.to_bits(value, dtype)])
            lines = helper.describe_value(value, dtype).splitlines()  # the bits by field, ..., the stored value
            for line in [lines[0]] + [line for line in lines if line.startswith("stored")]:
                expect(report).to_contain_text(re.sub(r"\s+", " ", line))
        return wait

    shows(1 / 3, "bfloat16")()
    _timed("type -1/3", timings, lambda: (value_box.fill(repr(-1 / 3)), value_box.press("Enter")),
           shows(-1 / 3, "bfloat16"))
    bits = _bits(widget)
    ones = {}
    for i, bit in enumerate(bits):
        if bit["bit"] == "1":
            ones.setdefault(_field(i, "bfloat16"), set()).add(bit["colour"])
    zeros = {bit["colour"] for bit in bits if bit["bit"] == "0"}
    page.screenshot("01_bit_explorer_colours", widget)
    assert set(ones) == {"sign", "exponent", "mantissa"}  # -1/3 has a 1 in every field

    flipped = "".join(b["bit"] for b in bits)[:-1] + ("0" if bits[-1]["bit"] == "1" else "1")
    x = helper.from_bits(flipped, "bfloat16")
    last_bit = widget.locator("button", has_text=re.compile(r"^\s*[01]\s*$")).last
    _timed("flip last bit", timings, last_bit.click,
           shows(x, "bfloat16"))
    _timed("select float16", timings, lambda: dtype_box.select_option("float16"), shows(x, "float16"))
    _timed("select float8_e4m3fn", timings, lambda: dtype_box.select_option("float8_e4m3fn"),
           shows(x, "float8_e4m3fn"))
    page.screenshot("01_bit_explorer_after_driving", widget)
    _save_timings("01_bit_explorer", timings)
    page.assert_clean()
    # The colours last: the widget exists to show which bits are which field (measured after typing -1/3).
    assert all(len(colours) == 1 for colours in ones.values()), f"one colour per field: {ones}"
    assert len(set.union(*ones.values())) == 3, f"sign, exponent and mantissa 1-bits look alike: {ones}"
    assert not zeros & set.union(*ones.values()), f"0-bits share a field colour: {zeros} {ones}"


def _playground_text(report) -> str:
    return re.sub(r"\s+", " ", report.inner_text()).strip()


def test_playground_in_a_running_lesson(running):
    """Run lesson 03; press, drag, tick and select every control: the report follows and matches the kernel."""
    page = running["03"].page
    notebook = _served(page, _lesson("03"))
    cells = running["03"].wait()
    (index,) = _widget_cells(notebook)
    widget = cells.nth(index).locator(".jp-OutputArea-output .widget-vbox").first
    expect(widget).to_be_visible()
    report = widget.locator(".widget-html", has_text="MSE").first
    picture = widget.locator("img").first
    selects = widget.locator("select")
    granularity, group_size, method, percentile = (selects.nth(i) for i in range(4))
    handle = widget.locator(".noUi-handle").first
    timings = {}
    expect(report).to_contain_text("4-bit symmetric per_channel, minmax:")
    expect(group_size).to_be_disabled()  # no effect unless per_group
    expect(percentile).to_be_disabled()  # no effect unless the range is percentile

    def changes_to(text, new_picture=True):
        before = picture.get_attribute("src")

        def wait():
            expect(report).to_contain_text(text)
            if new_picture:
                expect(picture).not_to_have_attribute("src", before)
        return wait

    _timed("arrow right on bits", timings, lambda: (handle.focus(), handle.press("ArrowRight")),
           changes_to("5-bit symmetric per_channel"))
    # Drag to the right end; with continuous_update=False only the value at mouse-up is computed.
    report.evaluate("r => { window.qfReports = []; new MutationObserver(() => window.qfReports.push(r.innerText))"
                    ".observe(r, {subtree: true, childList: true, characterData: true}); }")
    box, track = handle.bounding_box(), widget.locator(".noUi-target").first.bounding_box()
    y = box["y"] + box["height"] / 2

    def drag():
        page.page.mouse.move(box["x"] + box["width"] / 2, y)
        page.page.mouse.down()
        page.page.mouse.move(track["x"] + track["width"] + 30, y, steps=12)
        page.page.mouse.up()
    _timed("drag bits to 8", timings, drag, changes_to("8-bit symmetric per_channel"))
    time.sleep(3)  # an intermediate value replayed late would show up here
    seen = [re.sub(r"\s+", " ", t).strip() for t in page.page.evaluate("window.qfReports")]
    assert seen and all(t.startswith("8-bit") for t in seen), f"dragging replayed intermediate values: {seen}"
    _timed("untick symmetric", timings, lambda: widget.locator("input[type=checkbox]").first.click(),
           changes_to("8-bit asymmetric per_channel, minmax:"))
    _timed("select per_group", timings, lambda: granularity.select_option("per_group"),
           changes_to("8-bit asymmetric per_group (g=32), minmax:"))
    expect(group_size).to_be_enabled()
    _timed("select group size 64", timings, lambda: group_size.select_option("64"),
           changes_to("8-bit asymmetric per_group (g=64), minmax:"))
    # With 64 values per group the 99.99th percentile is the max (the report says so): the same picture as min-max.
    _timed("select percentile", timings, lambda: method.select_option("percentile"),
           changes_to("8-bit asymmetric per_group (g=64), percentile 99.99:", new_picture=False))
    expect(percentile).to_be_enabled()
    _timed("select percentile 99", timings, lambda: percentile.select_option("99.0"),
           changes_to("8-bit asymmetric per_group (g=64), percentile 99:", new_picture=False))  # may look the same
    _timed("select mse", timings, lambda: method.select_option("mse"),
           changes_to("8-bit asymmetric per_group (g=64), mse:"))
    expect(percentile).to_be_disabled()
    page.screenshot("03_playground_after_driving", widget)

    # The numbers shown are the kernel's own: a new cell below prints playground_report for the same settings.
    source = "".join(_cells(notebook)[index]["source"])
    argument = re.search(r"quantization_playground\((.+)\)\s*$", source.strip()).group(1)
    cells.nth(index).locator(".jp-InputPrompt").click()
    page.page.keyboard.press("Escape")
    page.page.keyboard.press("b")
    new_cell = page.page.locator(".jp-Notebook .jp-Cell").nth(index + 1)
    new_cell.locator(".cm-content").click()
    page.page.keyboard.insert_text(f"print(helper.playground_report({argument}, bits=8, symmetric=False, "
                                   'granularity="per_group", group_size=64, method="mse", percentile=99.0)[1])')
    page.page.keyboard.press("Shift+Enter")
    printed = new_cell.locator(".jp-OutputArea-output")
    expect(printed).to_contain_text("MSE")
    assert re.sub(r"\s+", " ", printed.inner_text()).strip() == _playground_text(report)
    _save_timings("03_playground", timings)
    page.assert_clean()
