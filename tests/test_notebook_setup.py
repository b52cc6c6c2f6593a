import os

import numpy as np
import torch

import helper


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
