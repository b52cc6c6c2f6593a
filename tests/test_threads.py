"""one_thread: one intra-op thread inside, the previous count restored after, even on an exception."""

import pytest
import torch

from helper import one_thread


def test_one_thread_inside_and_restored_after():
    previous = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == previous


def test_one_thread_restores_after_an_exception():
    previous = torch.get_num_threads()
    with pytest.raises(RuntimeError), one_thread():
        raise RuntimeError("inside")
    assert torch.get_num_threads() == previous
