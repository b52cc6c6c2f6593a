"""helper.validation: every check accepts what it should and refuses the rest, naming the argument."""

import math

import numpy as np
import pytest
import torch

from helper.validation import (InputTypeError, check_bool, check_choice, check_finite, check_float_tensor,
                               check_int_in_range, check_percentile, check_positive, check_probability, check_real,
                               check_tensor, check_token_ids)


def test_a_type_error_is_also_a_value_error():
    with pytest.raises(TypeError):
        check_bool("yes", "flag")
    with pytest.raises(ValueError):
        check_bool("yes", "flag")


@pytest.mark.parametrize("value", [True, False, np.bool_(True)], ids=repr)
def test_check_bool_accepts_booleans(value):
    assert check_bool(value, "symmetric") is bool(value)


@pytest.mark.parametrize("value", ["False", "True", "", 0, 1, None, [True]], ids=repr)
def test_check_bool_refuses_strings_and_numbers(value):
    with pytest.raises(InputTypeError, match="symmetric must be True or False"):
        check_bool(value, "symmetric")


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), torch.tensor(3), np.array(3)], ids=repr)
def test_check_int_accepts_python_numpy_and_0dim_integers(value):
    result = check_int_in_range(value, "steps", 1, 10)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [2.5, 3.0, "3", True, None, torch.tensor([3, 4])], ids=repr)
def test_check_int_refuses_non_integers(value):
    with pytest.raises(InputTypeError, match="steps must be an integer"):
        check_int_in_range(value, "steps", 1, 10)


@pytest.mark.parametrize("value, message", [(0, r"step must be an integer >= 1, got 0"),
                                            (11, r"step must be an integer in \[1, 10\], got 11"),
                                            (10**400, r"in \[1, 10\]")], ids=["low", "high", "huge"])
def test_check_int_bounds(value, message):
    with pytest.raises(ValueError, match=message):
        check_int_in_range(value, "step", 1, None if value == 0 else 10)


def test_check_int_upper_bound_only():
    assert check_int_in_range(-5, "offset", high=0) == -5
    with pytest.raises(ValueError, match="offset must be an integer <= 0"):
        check_int_in_range(1, "offset", high=0)


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), torch.tensor(0.5), np.array(0.5)], ids=repr)
def test_check_real_accepts_numbers(value):
    assert check_real(value, "alpha", 0, 1) == float(value)


@pytest.mark.parametrize("value, message", [
    (float("nan"), "alpha must be a finite number, got nan"),
    (math.inf, "alpha must be a finite number, got inf"),
    (10**400, "alpha must be a float-sized number"),
    ("0.5", "alpha must be a number"),
    (True, "alpha must be a number"),
    (None, "alpha must be a number"),
    (1.5, r"alpha must be in \[0, 1\], got 1.5"),
], ids=["nan", "inf", "huge", "string", "bool", "none", "range"])
def test_check_real_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        check_real(value, "alpha", 0, 1)


def test_check_real_open_ends_and_infinity_when_allowed():
    with pytest.raises(ValueError, match=r"x must be < 1, got 1.0"):
        check_real(1, "x", high=1, high_open=True)
    with pytest.raises(ValueError, match=r"x must be >= 2, got 1.0"):
        check_real(1, "x", low=2)
    with pytest.raises(ValueError, match=r"x must be in \(0, 1\)"):
        check_real(0, "x", 0, 1, low_open=True, high_open=True)
    assert check_real(math.inf, "threshold", 0, finite=False) == math.inf
    with pytest.raises(ValueError, match="finite"):
        check_real(math.nan, "threshold", 0, finite=False)


def test_positive_probability_percentile():
    assert check_positive(1e-9, "scale") == 1e-9
    with pytest.raises(ValueError, match=r"scale must be > 0.0, got 0.0"):
        check_positive(0.0, "scale")
    with pytest.raises(ValueError, match="scale must be a finite number"):
        check_positive(math.inf, "scale")
    assert check_probability(1, "alpha") == 1.0
    with pytest.raises(ValueError, match="alpha must be in"):
        check_probability(-0.1, "alpha")
    assert check_percentile(99.9, "percentile") == 99.9
    with pytest.raises(ValueError, match="percentile must be in"):
        check_percentile(100.5, "percentile")


def test_check_choice_types_must_match():
    assert check_choice("mse", "method", ("minmax", "mse")) == "mse"
    assert check_choice(np.int64(8), "bits", (4, 8)) == 8
    for value in (8.0, "8", True, 6):
        with pytest.raises(ValueError, match="bits must be one of 4, 8"):
            check_choice(value, "bits", (4, 8))


def test_check_tensor_and_float_tensor():
    x = torch.ones(3)
    assert check_tensor(x, "x") is x and check_float_tensor(x, "x") is x
    with pytest.raises(InputTypeError, match="weights must be a torch.Tensor, got list"):
        check_tensor([1.0], "weights")
    with pytest.raises(ValueError, match=r"weights is empty \(shape \(0, 4\)\)"):
        check_tensor(torch.ones(0, 4), "weights")
    assert check_tensor(torch.ones(0), "weights", allow_empty=True).numel() == 0
    with pytest.raises(InputTypeError, match="weights must be a floating-point tensor, got torch.int64"):
        check_float_tensor(torch.arange(3), "weights")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_check_finite_counts_the_bad_values(bad):
    x = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(ValueError, match=r"scales contains NaN or Inf \(1 of 3 values\)"):
        check_float_tensor(x, "scales")
    with pytest.raises(ValueError, match="scales contains NaN or Inf"):
        check_finite(x, "scales")
    assert check_float_tensor(x, "scales", finite=False) is x


def test_check_token_ids():
    ids = torch.tensor([[0, 5, 9]])
    assert check_token_ids(ids, "windows", vocab_size=10) is ids
    with pytest.raises(ValueError, match=r"windows must be token ids in 0..9, got ids from 0 to 10"):
        check_token_ids(torch.tensor([[0, 10]]), "windows", vocab_size=10)
    with pytest.raises(ValueError, match=r"windows must be token ids in 0 and up, got ids from -1"):
        check_token_ids(torch.tensor([-1, 2]), "windows")
    with pytest.raises(InputTypeError, match="windows must hold integer token ids, got dtype torch.float32"):
        check_token_ids(torch.ones(2, 3), "windows")
    with pytest.raises(ValueError, match="windows is empty"):
        check_token_ids(torch.zeros(0, 3, dtype=torch.long), "windows")
