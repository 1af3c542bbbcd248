"""Fake habana_frameworks.torch.core: mark_step records the call."""
from habana_frameworks.fake_log import record


def mark_step() -> None:
    record("mark_step")
