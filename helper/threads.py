"""Intra-op threads: run loops of many small tensor ops on one thread. Used by GPTQ and AWQ (lesson 06).

Measured on 2 shared cores (2026-12): `torch.cholesky_inverse` of a 1536 x 1536 matrix took 7.4 s with two
threads and 0.15 s with one; AWQ on two SmolLM2 blocks 109 s against 8.4 s. Each small op waits for the second
thread to be scheduled, and a busy core makes it wait a whole time slice. One thread also makes the results
independent of the machine's thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed torch ops on one intra-op thread, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
