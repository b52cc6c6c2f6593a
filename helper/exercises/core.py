"""What every checker shares: the Feedback verdict and how a learner's answer is read."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import torch

__all__ = ["Feedback", "normalize_answer", "is_number", "as_tensor", "call_learner", "as_array", "decimals",
           "rounded_to_own_decimals"]

# An integer beyond this is read as infinity: float(10**400) would raise, and no answer is that large.
_LARGEST_INTEGER = 2**63


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: right or not, and a specific message."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return ("Right! " if self.correct else "Not yet: ") + self.message


def normalize_answer(answer: Any) -> Any:
    """Plain Python numbers from NumPy scalars and 0-dim tensors (inside tuples and lists too); huge ints -> inf."""
    if isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    if isinstance(answer, torch.Tensor) and answer.dim() == 0:
        answer = answer.item()
    elif isinstance(answer, np.ndarray) and answer.ndim == 0:
        answer = answer.item()
    elif isinstance(answer, np.generic):
        answer = answer.item()
    if isinstance(answer, numbers.Integral) and not isinstance(answer, bool):
        answer = int(answer)
        return answer if abs(answer) < _LARGEST_INTEGER else math.copysign(math.inf, answer)
    if isinstance(answer, numbers.Real) and not isinstance(answer, bool):
        return float(answer)
    if isinstance(answer, tuple):
        return tuple(normalize_answer(a) for a in answer)
    if isinstance(answer, list):
        return [normalize_answer(a) for a in answer]
    return answer


def is_number(answer: Any) -> bool:
    """True for an int or a non-NaN float (after normalize_answer); False for bools, strings, NaN."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return False
    return not (isinstance(answer, float) and math.isnan(answer))


def as_tensor(answer: Any) -> torch.Tensor | None:
    """answer as a float64 tensor, or None if it is not a (non-ragged) array of finite numbers."""
    try:
        tensor = torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None
    return tensor if bool(torch.isfinite(tensor).all()) else None


# --- running a learner's function: every failure becomes a message, never a traceback -----------------------

def call_learner(function: Any, name: str, *args: Any, case: str = "",
                 returns: str = "") -> tuple[Any, Feedback | None]:
    """(result, None) if function(*args) returned something, else (None, the Feedback that says what went wrong).

    case ("on a hidden 8x16 weight") prefixes the message; returns ("codes, scale") names what to return.
    """
    if not callable(function):
        return None, Feedback(False, f"pass your function itself ({name}, without brackets), not its result.")
    try:
        result = function(*args)
    except Exception as error:  # a learner's function may fail in any way; say how
        prefix = f"{case} your" if case else "your"
        return None, Feedback(False, f"{prefix} function raised {type(error).__name__}: {error}")
    if result is None:
        hint = f"end it with `return {returns}`." if returns else "did you forget `return`?"
        return None, Feedback(False, f"your function returned None: {hint}")
    return result, None


def as_array(result: Any, what: str) -> tuple[np.ndarray | None, str | None]:
    """result (tensor, array, list) as a NumPy array, or (None, a message saying why it is not one)."""
    if isinstance(result, (bytes, bytearray)):
        return np.frombuffer(bytes(result), dtype=np.uint8).copy(), None
    if isinstance(result, str):
        return None, f"your function returned a string ({result[:30]!r}): return a tensor of {what}."
    if isinstance(result, torch.Tensor):
        return result.detach().cpu().numpy(), None
    try:
        array = np.asarray(result)
    except (ValueError, TypeError):
        return None, f"your function returned a ragged list (rows of different lengths): return a tensor of {what}."
    if array.dtype == object:
        return None, (f"your function returned a {type(result).__name__} that is not a flat array of numbers "
                      f"(ragged or mixed): return a tensor of {what}.")
    return array, None


def decimals(answer: float) -> int:
    """How many decimals a number was written with: decimals(4.127) = 3, decimals(4.1270) = 3, decimals(6) = 0."""
    if not math.isfinite(answer) or float(answer).is_integer():
        return 0
    return max(0, -Decimal(repr(float(answer))).as_tuple().exponent)


def rounded_to_own_decimals(answer: float, expected: float, min_decimals: int) -> bool | None:
    """True if answer is expected rounded to the answer's own number of decimals (at least min_decimals).

    None if it is expected rounded, but to fewer decimals than min_decimals (too coarse to tell apart).
    E.g. expected 4.126953125: 4.127 and 4.12695 are True, 4.13 is None (2 < 3 decimals), 4.126 is False.
    """
    written = decimals(answer)
    if abs(answer - expected) > 0.5 * 10.0**-written * (1 + 1e-9) + 1e-12:
        return False
    return True if written >= min_decimals else None
