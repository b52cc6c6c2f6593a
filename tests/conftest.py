"""Test-wide rules: offline, quiet, and any attempt to reach the network fails loudly."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import settings

import helper

helper.set_offline()
helper.quiet_libraries()

# In CI, property tests draw the same examples every run (a green CI must not depend on the draw); locally they
# explore new ones each run, which is where a counterexample gets found and then fixed.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

_LOOPBACK = ("127.", "::1", "localhost")


class NetworkBlocked(RuntimeError):
    """A test tried to open a connection to a non-loopback address."""


def _guard(original):
    def connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
            raise NetworkBlocked(f"network access attempted in a test: {address!r}")
        return original(self, address, *args, **kwargs)
    return connect


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Every test runs with outbound connections blocked (loopback stays open for Jupyter kernels)."""
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = _guard(original_connect)
    socket.socket.connect_ex = _guard(original_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = original_connect, original_connect_ex


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct in fp32 (loaded once for the session)."""
    return helper.load_smollm2()


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 in fp32 (loaded once for the session)."""
    return helper.load_minilm()
