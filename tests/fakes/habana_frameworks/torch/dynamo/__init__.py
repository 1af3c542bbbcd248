"""Fake hpu_backend for torch.compile: runs the graph eagerly and keeps a recipe cache on disk.

A "recipe" is keyed by the FX graph's code and its input shapes and dtypes; with a recipe cache
configured at start, a compile is a hit when its recipe file exists, else a miss that writes it.
"""
import hashlib
from pathlib import Path

import torch
from torch._dynamo.backends import registry

from habana_frameworks.fake_log import record


def hpu_backend(gm, example_inputs):
    import habana_frameworks.torch as htorch

    shapes = [(tuple(t.shape), str(t.dtype)) for t in example_inputs if isinstance(t, torch.Tensor)]
    key = hashlib.sha256((gm.code + repr(shapes)).encode()).hexdigest()[:16]
    config = htorch.recipe_cache_config_at_start
    if not config:
        record("compile", key, "no cache")
    else:
        recipe = Path(config.split(",")[0]) / f"{key}.recipe"
        if recipe.exists():
            record("compile", key, "hit")
        else:
            recipe.parent.mkdir(parents=True, exist_ok=True)
            recipe.write_text(gm.code)
            record("compile", key, "miss")
    return gm.forward


registry._COMPILER_FNS.pop("hpu_backend", None)
registry.register_backend(hpu_backend, "hpu_backend")
