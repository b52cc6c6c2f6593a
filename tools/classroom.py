"""The classroom kit, generated from the notebooks (one source of truth): student and solution editions,
reveal.js slides and a static HTML site, all readable offline.

    python tools/classroom.py student   # build/student/NN_*.ipynb and build/solutions/NN_*.ipynb
    python tools/classroom.py slides    # build/slides/NN_*.slides.html + build/slides/reveal.js/
    python tools/classroom.py html      # build/html/index.html, NN_*.html, assets/mathjax/

It reads the cell tags every lesson carries (tests/test_project.py checks them): `exercise` on the markdown cell
stating an exercise and on the code cell calling helper.check(, `solution` on the markdown cell holding its
<details> solution. It needs nbformat and nbconvert (the dev extras), jupyter-server-mathjax (MathJax 2) and
sphinx-revealjs (reveal.js; installed --no-deps, only its files are used); it does not import helper.
"""

from __future__ import annotations

import argparse
import copy
import html
import importlib.util
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

__all__ = ["ROOT", "lesson_paths", "student_edition", "solution_edition", "slide_notebook", "build_student",
           "build_slides", "build_html", "lesson_table", "objectives"]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# What a deck needs of reveal.js (the white theme uses no web fonts; the others import Google's).
REVEAL_FILES = ("LICENSE", "dist/reveal.js", "dist/reveal.css", "dist/theme/white.css",
                "dist/theme/fonts/source-sans-pro", "plugin/notes")
SLIDE_LINES = 24  # a projected 960 x 700 slide holds about this many lines of text or code


def lesson_paths(notebooks: Path = ROOT / "notebooks") -> list[Path]:
    """The lessons, in order: notebooks/NN_*.ipynb."""
    return sorted(p for p in notebooks.glob("*.ipynb") if re.match(r"\d\d_", p.name))


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", [])


def student_edition(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The lesson without its solution cells and with the outputs of its exercise code cells cleared."""
    student = copy.deepcopy(notebook)
    student.cells = [c for c in student.cells if "solution" not in _tags(c)]
    for cell in student.cells:
        if cell.cell_type == "code" and "exercise" in _tags(cell):
            cell.outputs, cell.execution_count = [], None
    return student


def solution_edition(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The lesson's title, then every exercise: its statement, the cell a learner fills in, the solution."""
    cells = [copy.deepcopy(notebook.cells[0]), nbformat.v4.new_markdown_cell("## Exercises and solutions")]
    for cell in notebook.cells:
        if {"exercise", "solution"} & set(_tags(cell)):
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            if "solution" in _tags(cell):  # open: a teacher reads them all at once
                cell.source = cell.source.replace("<details>", "<details open>", 1)
            cells.append(cell)
    solutions = copy.deepcopy(notebook)
    solutions.cells = cells
    return solutions


def _cell_lines(cell: dict) -> int:
    lines = cell.source.count("\n") + 1
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "image/png" in data or "image/svg+xml" in data:
            lines += 16
        else:
            lines += str(output.get("text", data.get("text/plain", ""))).count("\n") + 1
    return lines


def slide_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition with reveal.js slide types: `#`/`##` headings start a slide, `###` a sub-slide, and a
    slide that grows past SLIDE_LINES continues on a sub-slide."""
    slides = student_edition(notebook)
    used = SLIDE_LINES
    for cell in slides.cells:
        heading = re.match(r"(#{1,3}) ", cell.source) if cell.cell_type == "markdown" else None
        lines = _cell_lines(cell)
        if heading and len(heading.group(1)) <= 2:
            kind, used = "slide", lines
        elif heading or used + lines > SLIDE_LINES:
            kind, used = "subslide", lines
        else:
            kind, used = "-", used + lines
        cell.metadata["slideshow"] = {"slide_type": kind}
    return slides


def _offline_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Widgets shown as the picture of their view stored beside them (no widget JavaScript from a CDN), and
    `\\text{zero\\_point}` as MathJax 2 reads it: its \\text{} is literal, so `\\_` would show its backslash."""
    offline = copy.deepcopy(notebook)
    offline.metadata.pop("widgets", None)
    for cell in offline.cells:
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\\text\{([^{}]*)\}",
                                 lambda m: "\\text{" + m.group(1).replace("\\_", "_") + "}", cell.source)
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                del output["data"][WIDGET_VIEW]
    return offline


def _exporter(kind: str, **resources: str):
    from nbconvert import HTMLExporter, SlidesExporter

    exporter_class = SlidesExporter if kind == "slides" else HTMLExporter
    exporter = exporter_class(extra_template_basedirs=[str(TEMPLATES)],
                              template_name="offline_slides" if kind == "slides" else "offline_lab")
    exporter.mathjax_url = resources["mathjax_url"]
    if kind == "slides":
        exporter.reveal_url_prefix = resources["reveal_url_prefix"]
        exporter.reveal_scroll, exporter.reveal_theme = True, "white"
    return exporter


def _package_dir(module: str, inside: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{module} is not installed: `make setup`, or pip install it (see README, classroom kit)")
    return Path(list(spec.submodule_search_locations)[0]) / inside


def _copy_mathjax(target: Path) -> None:
    source = _package_dir("jupyter_server_mathjax", "static")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("SVG", "localization", "*.map"))


def build_student(out: Path = ROOT / "build") -> list[Path]:
    """Write build/student/NN_*.ipynb and build/solutions/NN_*.ipynb; return the paths written."""
    written = []
    for folder, edition in (("student", student_edition), ("solutions", solution_edition)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for path in lesson_paths():
            target = out / folder / path.name
            nbformat.write(edition(nbformat.read(path, as_version=4)), target)
            written.append(target)
    return written


def build_slides(out: Path = ROOT / "build" / "slides") -> list[Path]:
    """One reveal.js deck per lesson, with reveal.js and MathJax copied beside them; return the decks."""
    out.mkdir(parents=True, exist_ok=True)
    reveal, source = out / "reveal.js", _package_dir("sphinx_revealjs", "_static/revealjs")
    shutil.rmtree(reveal, ignore_errors=True)
    for part in REVEAL_FILES:
        (reveal / part).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (source / part).is_dir() else shutil.copy2
        copy(source / part, reveal / part)
    _copy_mathjax(out / "mathjax")
    exporter = _exporter("slides", reveal_url_prefix="reveal.js",
                         mathjax_url="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe")
    written = []
    for path in lesson_paths():
        body, _ = exporter.from_notebook_node(_offline_copy(slide_notebook(nbformat.read(path, as_version=4))))
        target = out / f"{path.stem}.slides.html"
        target.write_text(body)
        written.append(target)
    return written


def objectives(notebook: nbformat.NotebookNode) -> list[str]:
    """The lesson's learning objectives: the bullets under "You will learn" in its first cell."""
    first = notebook.cells[0].source
    after = first.split("You will learn", 1)[1] if "You will learn" in first else ""
    return [re.sub(r"\s+", " ", item).strip() for item in re.findall(r"(?ms)^[-*] (.+?)(?=^[-*] |^\s*$|\Z)", after)]


def lesson_table(readme: Path = ROOT / "README.md") -> list[dict[str, str]]:
    """The README's lesson table: number, notebook file name, what you learn, run time."""
    rows = []
    for line in readme.read_text().split("## Lessons", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d\d", cells[0]):
            rows.append({"number": cells[0], "notebook": cells[1].strip("`").split("/")[-1],
                         "learn": cells[2], "runs_in": cells[3]})
    return rows


def _inline_markdown(text: str) -> str:
    text = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Quantization Fundamentals</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
td.num {{ font-weight: bold; }}
</style>
</head>
<body>
<h1>Quantization Fundamentals</h1>
<p>An offline course on how neural networks and LLMs are made smaller and faster by quantization. These pages are
the lessons with their stored outputs: they read without Python and without a network. To run the code, open the
notebooks in JupyterLab (see the course's README).</p>
<table>
<thead><tr><th>#</th><th>lesson</th><th>what you learn</th><th>runs in</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p>Built {built} from the notebooks by <code>tools/classroom.py html</code>.</p>
</body>
</html>
"""


def build_html(out: Path = ROOT / "build" / "html") -> list[Path]:
    """The course as a static site: one page per lesson, an index with the lesson table, MathJax beside them."""
    out.mkdir(parents=True, exist_ok=True)
    _copy_mathjax(out / "assets" / "mathjax")
    exporter = _exporter("html", mathjax_url="assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe")
    titles, written = {}, []
    for path in lesson_paths():
        notebook = nbformat.read(path, as_version=4)
        titles[path.name] = notebook.cells[0].source.splitlines()[0].lstrip("# ").strip()
        body, _ = exporter.from_notebook_node(_offline_copy(notebook))
        target = out / f"{path.stem}.html"
        target.write_text(body)
        written.append(target)
    rows = []
    for row in lesson_table():
        if row["notebook"] not in titles:
            continue
        page = Path(row["notebook"]).with_suffix(".html").name
        rows.append(f'<tr><td class="num">{row["number"]}</td><td><a href="{page}">'
                    f'{html.escape(titles[row["notebook"]])}</a></td><td>{_inline_markdown(row["learn"])}</td>'
                    f'<td>{html.escape(row["runs_in"])}</td></tr>')
    index = out / "index.html"
    index.write_text(INDEX.format(rows="\n".join(rows), built=time.strftime("%Y-%m-%d")))
    return [index] + written


def main(argv: list[str] | None = None) -> int:
    """Command line: build one or more artefacts and print what was written, with sizes and times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["student", "slides", "html"])
    args = parser.parse_args(argv)
    builders = {"student": (build_student, ROOT / "build" / "student"),
                "slides": (build_slides, ROOT / "build" / "slides"), "html": (build_html, ROOT / "build" / "html")}
    for what in args.what:
        start = time.perf_counter()
        builder, folder = builders[what]
        written = builder()
        folders = [folder, ROOT / "build" / "solutions"] if what == "student" else [folder]
        size = sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file())
        print(f"{what}: {len(written)} files in {', '.join(str(d.relative_to(ROOT)) for d in folders)}, "
              f"{size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
