"""Checking inputs at the public boundary: one place for the messages every helper function gives.

Learners type odd values, checkpoints come from other people and GGUF files from the internet: every
public function checks what it is given, once, with one of these, and says what was wrong and what is
allowed, naming the argument: `ValueError("bits must be an integer in [1, 64], got 1000")`.
A wrong *type* raises InputTypeError, which is a TypeError and a ValueError at once, so callers that
catch ValueError for every bad input keep working.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import numpy as np
import torch

__all__ = ["InputTypeError", "check_bool", "check_int_in_range", "check_real", "check_positive",
           "check_probability", "check_percentile", "check_choice", "check_tensor", "check_float_tensor",
           "check_finite", "check_token_ids"]


class InputTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string for a number, a list for a tensor); also a ValueError."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(value: object) -> object:
    """A one-element tensor or NumPy array as its Python number; anything else unchanged."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return value.item()
    return value


def check_bool(value: object, name: str) -> bool:
    """value as a bool; only True/False (or NumPy's) pass: the string "False" is not False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputTypeError(f"{name} must be True or False, got {_shown(value)} ({type(value).__name__})")


def check_int_in_range(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """value as an int with low <= value <= high (either bound may be None); bools and 2.5 are refused."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {_shown(value)} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"in [{low:,}, {high:,}]" if low is not None and high is not None
                  else f">= {low:,}" if low is not None else f"<= {high:,}")
        raise ValueError(f"{name} must be an integer {bounds}, got {value:,}")
    return value


def check_real(value: object, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """value as a float, not NaN, finite unless finite=False, within [low, high] (open ends if asked)."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {_shown(value)} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a float-sized number, got {_shown(value)}") from None
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ValueError(f"{name} must be a finite number, got {number}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"{'>' if low_open else '>='} {low}"
        else:
            bounds = f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {bounds}, got {number}")
    return number


def check_positive(value: object, name: str) -> float:
    """value as a finite float > 0 (a scale, a step, a threshold)."""
    return check_real(value, name, low=0.0, low_open=True)


def check_probability(value: object, name: str) -> float:
    """value as a float in [0, 1] (a fraction, an alpha)."""
    return check_real(value, name, low=0.0, high=1.0)


def check_percentile(value: object, name: str, low: float = 0.0, high: float = 100.0) -> float:
    """value as a float in [low, high] percent."""
    return check_real(value, name, low=low, high=high)


def check_choice(value: object, name: str, choices: Iterable[object]) -> object:
    """value itself if it is one of choices (compared by ==, types must match: 8.0 is not 8, "8" is not 8)."""
    choices = tuple(choices)
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        for choice in choices:  # NumPy integers are fine where Python ints are
            if type(choice) is int and int(value) == choice:
                return choice
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_shown(value)}")


def check_tensor(x: object, name: str, allow_empty: bool = False) -> torch.Tensor:
    """x itself if it is a torch.Tensor (non-empty unless allow_empty)."""
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): there is nothing to work on")
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """x itself if it holds no NaN and no Inf."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains NaN or Inf ({bad:,} of {x.numel():,} values): clean or clip it first")
    return x


def check_float_tensor(x: object, name: str = "x", allow_empty: bool = False, finite: bool = True) -> torch.Tensor:
    """x itself if it is a floating-point tensor, non-empty and free of NaN/Inf (unless told otherwise)."""
    check_tensor(x, name, allow_empty)
    if not x.is_floating_point():
        raise InputTypeError(f"{name} must be a floating-point tensor, got {x.dtype} "
                             f"(convert with .float() if the integers are the values you mean)")
    return check_finite(x, name) if finite else x


def check_token_ids(ids: object, name: str, vocab_size: int | None = None) -> torch.Tensor:
    """ids itself if it is a non-empty integer tensor with every id in [0, vocab_size)."""
    check_tensor(ids, name)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InputTypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        allowed = f"0..{vocab_size - 1}" if vocab_size is not None else "0 and up"
        raise ValueError(f"{name} must be token ids in {allowed}, got ids from {low:,} to {high:,}")
    return ids
