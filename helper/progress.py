"""What a learner has checked and passed in this kernel: `helper.progress()` prints it, per lesson.

Every `helper.check(...)` with a real answer (not `...`, not an empty `def f(...): ...`) is recorded here, in this
Python process only: nothing is sent anywhere. `progress("me.json", learner="Ana")` also writes the report as a
small JSON file a learner can hand in. A teacher collects the files; the course never does.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["progress", "progress_report", "reset_progress"]

# exercise name -> [tries, passed]; the one piece of kernel state progress() reports (reset_progress clears it).
_ATTEMPTS: dict[str, list] = {}


def _stub() -> None:
    ...  # the body of an exercise cell nobody has filled in yet


def _is_unanswered(answer: Any) -> bool:
    """True for `...`, None and a function whose body is still only `...` (nothing to record)."""
    if answer is ... or answer is None:
        return True
    code = getattr(answer, "__code__", None)
    return code is not None and code.co_code == _stub.__code__.co_code


def _record_attempt(exercise: str, correct: bool) -> None:
    """Count one checked answer to exercise (called by helper.check); passed stays True once reached."""
    tries_passed = _ATTEMPTS.setdefault(exercise, [0, False])
    tries_passed[0] += 1
    tries_passed[1] = tries_passed[1] or bool(correct)


def progress_report() -> dict[str, dict[str, dict[str, Any]]]:
    """{lesson: {exercise: {"tries": n, "passed": bool}}} for every exercise of the course, tried or not."""
    from .exercises import EXERCISES

    report: dict[str, dict[str, dict[str, Any]]] = {}
    for exercise in EXERCISES:
        tries, passed = _ATTEMPTS.get(exercise, (0, False))
        report.setdefault(exercise.split(".", 1)[0], {})[exercise] = {"tries": tries, "passed": passed}
    return report


def _lesson_line(lesson: str, exercises: dict[str, dict[str, Any]]) -> str:
    passed = sum(e["passed"] for e in exercises.values())
    tried = sum(e["tries"] > 0 for e in exercises.values())
    return f"lesson {lesson}: {passed} of {len(exercises)} passed, {tried} checked"


def _exercise_line(exercise: str, result: dict[str, Any]) -> str:
    tries = result["tries"]
    if result["passed"]:
        status = f"passed ({tries} {'try' if tries == 1 else 'tries'})"
    elif tries:
        status = f"not yet ({tries} {'try' if tries == 1 else 'tries'})"
    else:
        status = "not checked"
    return f"  {'✓' if result['passed'] else '·'} {exercise:<34} {status}"


def progress(path: str | os.PathLike | None = None, learner: str | None = None) -> None:
    """Print per lesson which exercises were checked and passed in this kernel; write them as JSON to path."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or Path) or None, not {type(path).__name__}")
    if learner is not None and not isinstance(learner, str):
        raise TypeError(f"learner must be a name (str) or None, not {type(learner).__name__}")
    report = progress_report()
    lines = []
    for lesson, exercises in report.items():
        if not any(e["tries"] for e in exercises.values()):
            lines.append(_lesson_line(lesson, exercises))
            continue
        lines += [_lesson_line(lesson, exercises)] + [_exercise_line(n, r) for n, r in exercises.items()]
    passed = sum(e["passed"] for lesson in report.values() for e in lesson.values())
    total = sum(len(lesson) for lesson in report.values())
    lines.append(f"course: {passed} of {total} exercises passed")
    if path is not None:
        target = Path(path)
        if target.is_dir():
            raise ValueError(f"path {str(path)!r} is a folder; give a file name such as progress.json")
        document = {"course": "Quantization Fundamentals", "learner": learner,
                    "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "passed": passed, "exercises": total, "lessons": report}
        target.write_text(json.dumps(document, indent=2) + "\n")
        lines.append(f"written to {target}")
    print("\n".join(lines))


def reset_progress() -> None:
    """Forget every recorded check (a fresh start in the same kernel; tests use it too)."""
    _ATTEMPTS.clear()
