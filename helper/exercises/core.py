"""What every checker shares: the Feedback verdict and how a learner's answer is read."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Feedback", "normalize_answer", "is_number", "as_tensor"]

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
