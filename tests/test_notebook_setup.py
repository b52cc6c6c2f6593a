import os
import warnings

import numpy as np
import pytest
import torch

import helper


def test_set_up_notebook_sets_threads_when_asked_and_says_so(capsys):
    previous = torch.get_num_threads()
    try:
        helper.set_up_notebook(threads=1)
        assert torch.get_num_threads() == 1 and capsys.readouterr().out.rstrip().endswith("| offline | 1 thread")
        for bad, error in ((0, ValueError), ("1", TypeError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(error, match="threads"):
                helper.set_up_notebook(threads=bad)
    finally:
        torch.set_num_threads(previous)
        torch.set_printoptions(profile="default")
        np.set_printoptions(precision=8, suppress=False)


def test_set_up_notebook_is_offline_seeded_and_says_so(capsys):
    helper.set_up_notebook(seed=3)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    first = torch.rand(2)
    helper.set_up_notebook(seed=3)
    assert torch.equal(first, torch.rand(2))
    assert np.get_printoptions()["precision"] == 4
    assert "torch 2.13.0" in capsys.readouterr().out
    torch.set_printoptions(profile="default")
    np.set_printoptions(precision=8, suppress=False)


def _warnings_seen_after_set_up(emit) -> list[str]:
    """Messages of the warnings emit() raises once set_up_notebook has installed its filters."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()  # start from Python's defaults, not pytest's filters
        helper.set_up_notebook()
        emit()
    torch.set_printoptions(profile="default")
    np.set_printoptions(precision=8, suppress=False)
    return [str(w.message) for w in seen]


@pytest.mark.parametrize("category", [UserWarning, RuntimeWarning, FutureWarning])
def test_a_learners_own_warning_still_shows(category, capsys):
    assert _warnings_seen_after_set_up(lambda: warnings.warn(f"my own {category.__name__}", category)) == [
        f"my own {category.__name__}"]


@pytest.mark.parametrize("module", ["transformers.modeling_utils", "torch.jit._script", "bitsandbytes",
                                    "optimum.quanto.tensor", "huggingface_hub.file_download"])
@pytest.mark.parametrize("category", [UserWarning, FutureWarning, DeprecationWarning])
def test_noisy_library_warnings_are_hidden(module, category, capsys):
    def library_warns():
        warnings.warn_explicit("library noise", category, f"{module.replace('.', '/')}.py", 1, module=module)

    assert _warnings_seen_after_set_up(library_warns) == []


def test_a_package_named_like_a_library_is_not_hidden(capsys):
    def lookalike_warns():
        warnings.warn_explicit("mine", UserWarning, "torchvision_like.py", 1, module="torchlike")

    assert _warnings_seen_after_set_up(lookalike_warns) == ["mine"]
