"""The classroom kit (tools/classroom.py), built from the real notebooks: editions, slides, site, guide."""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import classroom  # noqa: E402
import teaching_guide  # noqa: E402

LESSONS = classroom.lesson_paths()
TAGGED = [p for p in LESSONS if any("solution" in c.metadata.get("tags", [])
                                    for c in nbformat.read(p, as_version=4).cells)]


def _tagged(notebook, tag):
    return [c for c in notebook.cells if tag in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", TAGGED, ids=lambda p: p.name)
def test_student_edition_has_no_solutions_and_no_exercise_outputs(path):
    original = nbformat.read(path, as_version=4)
    student = classroom.student_edition(original)
    solutions = _tagged(original, "solution")
    assert len(solutions) >= 3
    text = "\n".join(c.source for c in student.cells)
    assert "<details" not in text and "Solution</summary>" not in text
    elsewhere = "\n".join(c.source for c in original.cells if "solution" not in c.metadata.get("tags", []))
    for solution in solutions:  # the answer's own lines are gone, not just the <details> wrapper
        body = [line for line in solution.source.splitlines()[1:-1] if len(line.strip()) > 20]
        own = [line for line in body if line not in elsewhere]  # not the exercise cell's own `def f(...):`
        assert own and not any(line in text for line in own), solution.source[:80]
    exercise_code = [c for c in _tagged(student, "exercise") if c.cell_type == "code"]
    assert len(exercise_code) >= 3 and all(c.outputs == [] and c.execution_count is None for c in exercise_code)
    kept = [c for c in original.cells if "solution" not in c.metadata.get("tags", [])]
    assert len(student.cells) == len(kept)
    for before, after in zip(kept, student.cells):  # everything else, stored figures included, is kept
        assert before.source == after.source
        if before.cell_type == "code" and "exercise" not in before.metadata.get("tags", []):
            assert before.outputs == after.outputs


@pytest.mark.parametrize("path", TAGGED, ids=lambda p: p.name)
def test_solution_edition_has_every_solution_after_its_exercise(path):
    original = nbformat.read(path, as_version=4)
    edition = classroom.solution_edition(original)
    solutions = _tagged(original, "solution")
    texts = [c.source for c in _tagged(edition, "solution")]
    assert len(texts) == len(solutions)
    assert [t.replace("<details open>", "<details>", 1) for t in texts] == [s.source for s in solutions]
    statements = [c.source for c in _tagged(edition, "exercise") if c.cell_type == "markdown"]
    assert len(statements) == len(solutions) and all(s.startswith("**Exercise") for s in statements)


def test_build_student_writes_both_editions(tmp_path):
    written = classroom.build_student(tmp_path)
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [p.name for p in LESSONS]
    assert sorted(p.name for p in (tmp_path / "solutions").iterdir()) == [p.name for p in LESSONS]
    assert len(written) == 2 * len(LESSONS)
    nbformat.validate(nbformat.read(tmp_path / "student" / LESSONS[0].name, as_version=4))


def test_student_edition_of_lesson_01_executes_and_every_checker_says_not_yet():
    from nbclient import NotebookClient

    student = classroom.student_edition(nbformat.read(LESSONS[0], as_version=4))
    NotebookClient(student, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    checks = [c for c in student.cells if c.cell_type == "code" and "helper.check(" in c.source]
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in checks]
    assert len(printed) >= 3 and all(p.startswith("Not yet: replace ... with your answer") for p in printed)
    assert not [o for c in student.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


class _References(HTMLParser):
    """Every src/href of a page, and which of them sit in <script> or <link> tags."""

    def __init__(self):
        super().__init__()
        self.loaded, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "link", "img", "iframe", "source") and (attrs.get("src") or attrs.get("href")):
            self.loaded.append((tag, attrs.get("src") or attrs.get("href")))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def _references(page: Path) -> _References:
    parser = _References()
    parser.feed(page.read_text())
    return parser


def _assert_offline(folder: Path, pages: list[Path]):
    for page in pages:
        text = page.read_text()
        tags = re.findall(r"<(?:script|link)\b[^>]*>", text)
        assert not [t for t in tags if "http" in t], f"{page.name} loads from the network"
        assert tags or page.name == "index.html", f"{page.name} loads no script: no MathJax?"
        for tag, url in _references(page).loaded:
            if url.startswith("data:"):
                continue
            assert not re.match(r"[a-z]+:|//", url), f"{page.name}: <{tag}> {url} leaves the site"
            assert (page.parent / url.split("?")[0]).exists(), f"{page.name}: <{tag}> {url} is missing"
    for css in folder.rglob("*.css"):  # a style sheet may import web fonts
        assert not re.search(r"(@import\s+(url\()?|url\()\s*['\"]?(https?:)?//", css.read_text()), css


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    return out, classroom.build_html(out)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    return out, classroom.build_slides(out)


def test_site_has_every_lesson_an_index_whose_links_resolve_and_nothing_online(site):
    out, written = site
    assert [p.name for p in written] == ["index.html"] + [p.with_suffix(".html").name for p in LESSONS]
    links = _references(out / "index.html").links
    assert sorted(links) == sorted(p.with_suffix(".html").name for p in LESSONS)
    assert all((out / link).exists() for link in links)
    _assert_offline(out, written)
    assert (out / "assets" / "mathjax" / "MathJax.js").exists()
    assert (out / "assets" / "mathjax" / "LICENSE").exists()


def test_site_pages_keep_outputs_and_show_widgets_as_their_pictures(site):
    out, _ = site
    page = (out / LESSONS[0].with_suffix(".html").name).read_text()
    assert "data:image/png;base64" in page and "widget-view+json" not in page
    assert "MathJax.js" in page and "$" in page  # math is left for the local MathJax to typeset


def test_slides_one_deck_per_lesson_offline_with_reveal_and_its_licence(slides):
    out, written = slides
    assert [p.name for p in written] == [f"{p.stem}.slides.html" for p in LESSONS]
    _assert_offline(out, written)
    assert "MIT" in (out / "reveal.js" / "LICENSE").read_text()
    deck = written[0].read_text()
    assert deck.count('<section') >= 10 and "Reveal.initialize" in deck
    assert "Solution</summary>" not in deck  # decks are built from the student edition


def test_slide_types_follow_headings_and_long_slides_split():
    notebook = nbformat.read(LESSONS[0], as_version=4)
    deck = classroom.slide_notebook(notebook)
    kinds = [(c.source.split("\n", 1)[0], c.metadata["slideshow"]["slide_type"]) for c in deck.cells]
    assert all(kind == "slide" for first, kind in kinds if re.match(r"#{1,2} ", first))
    assert all(kind == "subslide" for first, kind in kinds if first.startswith("### "))
    assert {kind for _, kind in kinds} == {"slide", "subslide", "-"}


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_states_objectives(path):
    assert len(classroom.objectives(nbformat.read(path, as_version=4))) >= 3


def test_teachers_guide_objectives_are_the_notebooks_objectives():
    guide = (ROOT / "docs" / "teaching.md").read_text()
    assert teaching_guide.objectives_section() in guide, "run `python tools/teaching_guide.py` to update it"


def test_guide_names_every_lesson_in_its_run_times_and_plan():
    guide = (ROOT / "docs" / "teaching.md").read_text()
    for path in LESSONS:
        assert path.name in guide, path.name


def test_torch_index_is_used_only_when_it_answers(capsys, tmp_path):
    """tools/torch_index.py against loopback servers: an index with a torch/ page, one port nobody listens on."""
    import functools
    import http.server
    import socket
    import threading

    import torch_index

    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a href='torch-2.13.0+cpu-cp311.whl'>torch</a>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        torch_index.main([url])
        assert capsys.readouterr().out.strip() == f"--extra-index-url {url}"
    finally:
        server.shutdown()
    with socket.socket() as probe:  # a free port, closed again: connections to it are refused at once
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    torch_index.main([closed])
    captured = capsys.readouterr()
    assert captured.out == "" and "could not be reached" in captured.err
    torch_index.main([""])
    assert capsys.readouterr() == ("", "")


def test_no_make_install_runs_the_readmes_commands_with_the_makefiles_torch_fallback():
    import no_make_install

    commands = no_make_install.readme_commands()
    assert [c[:4] for c in commands][:3] == [["python", "-m", "pip", "install"]] * 3
    assert commands[-1] == ["python", "-m", "helper.models"]
    assert not [c for c in commands if "venv" in c]  # the script makes its own venv, never the course's .venv
    torch_line = next(c for c in commands if "torch==2.13.0" in c)
    assert torch_line[torch_line.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in makefile  # one source for both
    unreachable = ["python", "-m", "pip", "install", "torch==2.13.0", "--extra-index-url", "http://127.0.0.1:9"]
    assert no_make_install._torch_fallback(unreachable) == ["python", "-m", "pip", "install", "torch==2.13.0"]
