"""Auto-checked exercises: each checker computes the right answer with helper and says what is off.

One module per lesson holds that lesson's checkers (``CHECKERS``); ``core`` holds what they share.
"""

from __future__ import annotations

from typing import Any, Callable

from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from . import lesson07
from . import lesson08
from . import lesson09
from .core import Feedback, normalize_answer
from ..progress import _is_unanswered, _record_attempt

__all__ = ["Feedback", "EXERCISES", "evaluate", "check"]

EXERCISES: dict[str, Callable[[Any], Feedback]] = {
    **lesson01.CHECKERS, **lesson02.CHECKERS, **lesson03.CHECKERS,
    **lesson04.CHECKERS, **lesson05.CHECKERS, **lesson06.CHECKERS,
    **lesson07.CHECKERS,
    **lesson08.CHECKERS,
    **lesson09.CHECKERS,
}


def evaluate(exercise: str, answer: Any) -> Feedback:
    """The checker's verdict on answer for the named exercise (pure: prints nothing)."""
    if not isinstance(exercise, str) or exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    if answer is ... or answer is None:
        return Feedback(False, "replace ... with your answer, then run the cell again.")
    return EXERCISES[exercise](normalize_answer(answer))


def check(exercise: str, answer: Any) -> None:
    """Print instant feedback on answer for the named exercise; helper.progress() lists what was checked."""
    feedback = evaluate(exercise, answer)
    if not _is_unanswered(answer):
        _record_attempt(exercise, feedback.correct)
    print(feedback)
