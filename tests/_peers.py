"""The peer libraries (PyTorch, GPflow, ...) that oracle tests compare with."""

import importlib
import os

import pytest


def import_peer(name: str):
    """The module ``name``, or a skip when it is not installed. CI names the peers it installs
    in VARINF_REQUIRE_PEERS (comma-separated): for those a missing module fails the test."""
    if name in os.environ.get("VARINF_REQUIRE_PEERS", "").split(","):
        return importlib.import_module(name)
    return pytest.importorskip(name)
