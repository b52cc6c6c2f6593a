"""Write the generated sections of docs/teaching.md from the notebooks: learning objectives and run times.

    python tools/teaching_guide.py

The objectives are the "You will learn" bullets of each lesson's first cell (tests/test_classroom.py checks the
guide holds exactly these); the run times come from docs/lesson_times.json (tools/time_lessons.py --record).
Everything between a `<!-- generated:NAME -->` line and its `<!-- end:NAME -->` line is replaced.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

from classroom import ROOT, lesson_paths, objectives

__all__ = ["objectives_section", "times_section", "update_guide"]

GUIDE = ROOT / "docs" / "teaching.md"
TIMES = ROOT / "docs" / "lesson_times.json"


def _title(notebook: nbformat.NotebookNode) -> str:
    return notebook.cells[0].source.splitlines()[0].lstrip("# ").strip()


def objectives_section() -> str:
    """Markdown: per lesson, its title, file and "You will learn" bullets, as the notebook states them."""
    parts = []
    for path in lesson_paths():
        notebook = nbformat.read(path, as_version=4)
        bullets = "\n".join(f"- {item}" for item in objectives(notebook))
        parts.append(f"**{_title(notebook)}** (`notebooks/{path.name}`): the learner will know\n\n{bullets}")
    return "\n\n".join(parts)


def times_section(times: Path = TIMES) -> str:
    """Markdown table of the measured wall and CPU time of every lesson, with the conditions of the run."""
    recorded = json.loads(times.read_text()) if times.exists() else {"lessons": {}, "conditions": {}}
    rows = ["| lesson | wall time | CPU time (user + system) |", "|---|---|---|"]
    for path in lesson_paths():
        entry = recorded["lessons"].get(path.name)
        if entry and "note" in entry:
            rows.append(f"| `{path.name}` | {entry['note']} | |")
        elif entry:  # an optional remark says what the time includes (e.g. a one-time compile)
            remark = f" ({entry['remark']})" if "remark" in entry else ""
            rows.append(f"| `{path.name}` | {entry['wall_s'] / 60:.1f} min | {entry['cpu_s'] / 60:.1f} min{remark} |")
        else:
            rows.append(f"| `{path.name}` | not measured yet | not measured yet |")
    c = recorded.get("conditions", {})
    if c:
        rows.append("")
        rows.append(f"Measured {c['date']} by `tools/time_lessons.py` on the student editions (a fresh kernel per "
                    f"lesson, run top to bottom): {c['cores']} cores, OMP_NUM_THREADS={c['omp_num_threads']}, "
                    f"Python {c['python']}, load average {c['load_average_at_start']} at the start and "
                    f"{c['load_average_at_end']} at the end (other jobs shared the machine, so wall times are "
                    f"longer than on a quiet laptop; CPU time is the steadier figure).")
    return "\n".join(rows)


def update_guide(guide: Path = GUIDE) -> bool:
    """Rewrite the generated sections of the guide; True if anything changed."""
    text = old = guide.read_text()
    for name, section in (("objectives", objectives_section()), ("times", times_section())):
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{guide} has no <!-- generated:{name} --> ... <!-- end:{name} --> block")
        text = pattern.sub(lambda m: m.group(1) + section + "\n" + m.group(2), text)
    guide.write_text(text)
    return text != old


if __name__ == "__main__":
    print("updated" if update_guide() else "up to date", GUIDE.relative_to(ROOT))
    sys.exit(0)
