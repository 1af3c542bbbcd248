"""Fake habana_frameworks.torch.hpu: device queries and wrap_in_hpu_graph (which only records)."""
import os

from habana_frameworks.fake_log import record


def is_available() -> bool:
    return os.environ.get("FAKE_HPU_AVAILABLE", "1") == "1"


def device_count() -> int:
    return 1 if is_available() else 0


def get_device_name(device=None) -> str:
    return os.environ.get("FAKE_GAUDI_GENERATION", "GAUDI2") if is_available() else ""


def wrap_in_hpu_graph(module, asynchronous=False, disable_tensor_cache=False, dry_run=False, max_graphs=None):
    record("wrap_in_hpu_graph", type(module).__name__)
    return module
