"""The `fake_habana` fixture: Habana's stack faked on the CPU, for the hpu target's tests.

It puts tests/fakes (a fake habana_frameworks package, see its docstring) first on sys.path and
on PYTHONPATH (the build's recipe-cache warm-up runs in a child process), maps the "hpu" device
to the CPU, and undoes all of it afterwards, including Habana's recipe cache variable and every
imported habana_frameworks module, so each test starts Habana's (fake) stack afresh.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from runtime.graphs import hpu as hpu_graphs

FAKES_DIR = Path(__file__).parent / "fakes"
ROOT = Path(__file__).parent.parent


def purge_habana(keep_log: bool = True) -> None:
    """Forget every imported habana_frameworks module, so the next import starts the stack afresh.

    The call log survives unless keep_log is False: a test that restarts the stack still reads one log.
    """
    for name in [n for n in sys.modules if n == "habana_frameworks" or n.startswith("habana_frameworks.")]:
        if not (keep_log and name == "habana_frameworks.fake_log"):
            del sys.modules[name]


@pytest.fixture
def fake_habana(monkeypatch):
    """Yields the fake's call log (habana_frameworks.fake_log) once the fake is importable."""
    purge_habana(keep_log=False)
    saved_config = os.environ.pop(hpu_graphs.RECIPE_CACHE_ENV, None)
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(FAKES_DIR), str(ROOT),
                                                                 os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setattr(hpu_graphs, "DEVICE", torch.device("cpu"))
    from habana_frameworks import fake_log

    yield fake_log
    purge_habana(keep_log=False)
    torch._dynamo.reset()
    os.environ.pop(hpu_graphs.RECIPE_CACHE_ENV, None)
    if saved_config is not None:
        os.environ[hpu_graphs.RECIPE_CACHE_ENV] = saved_config
