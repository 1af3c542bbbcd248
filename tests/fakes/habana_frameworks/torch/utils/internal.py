"""Fake habana_frameworks.torch.utils.internal: lazy mode as PT_HPU_LAZY_MODE says (0 by default)."""
import os


def is_lazy() -> bool:
    return os.environ.get("PT_HPU_LAZY_MODE", "0") == "1"
