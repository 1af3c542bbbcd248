"""Fake habana_frameworks.torch: the version, and the recipe cache setting as the stack saw it at start.

The real bridge reads PT_HPU_RECIPE_CACHE_CONFIG ("<path>,<delete at start>,<max MB>") when it
starts and clears the folder at start when <delete at start> is true; so does this fake.
"""
import os
import shutil

__version__ = os.environ.get("FAKE_HABANA_VERSION", "1.21.0.fake")
recipe_cache_config_at_start = os.environ.get("PT_HPU_RECIPE_CACHE_CONFIG")
if recipe_cache_config_at_start:
    _path, _delete, _max_mb = recipe_cache_config_at_start.split(",")[:3]
    if _delete.strip().lower() == "true":
        shutil.rmtree(_path, ignore_errors=True)

from habana_frameworks.torch import core, dynamo, hpu, utils  # noqa: E402,F401  (the real package imports these)
