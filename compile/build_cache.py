"""The build cache behind `LLM(model=<checkpoint dir>)` and `runtime.load(<checkpoint dir>)`.

A checkpoint is built once into <cache>/<name>-<key>/, where the key hashes the checkpoint's
content (every top-level file) and the build options taken from EngineOptions; later loads find
the artifact there. An artifact in the cache that no longer matches (another torch version, a
changed model code) is rebuilt in place, reusing every graph whose key still matches: the cache is
ours, so rebuilding it is the fix, unlike an artifact the user built and named.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from compile.build import build
from compile.build_plan import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, BuildOptions, plan_build
from runtime.artifact import check_files, read_manifest, sha256_file
from runtime.config import EngineOptions

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/gaudi-aot")


def checkpoint_sha256(model_dir: Path) -> str:
    """sha256 over the names and contents of the checkpoint directory's top-level files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.name}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def build_options_for(model_dir: Path, options: EngineOptions, out_dir: Path | None = None) -> BuildOptions:
    """The build an engine with these options needs; batch limits the engine leaves open take the build defaults."""
    return BuildOptions(model_dir=model_dir, out_dir=out_dir, target="cpu", dtype=options.dtype,
                        max_model_len=options.max_model_len, block_size=options.block_size,
                        max_num_seqs=options.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
                        max_num_batched_tokens=options.max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS)


def cache_dir_for(model_dir: str | Path, options: EngineOptions) -> Path:
    """<cache>/<checkpoint dir name>-<sha256 of its content and the build options, 16 hex digits>."""
    model_dir = Path(model_dir)
    cache = Path(options.compile_cache_dir or DEFAULT_CACHE_DIR).expanduser()
    build_options = build_options_for(model_dir, options)
    described = {k: str(v) for k, v in asdict(build_options).items() if k not in ("model_dir", "out_dir", "notes")}
    key = hashlib.sha256(json.dumps({"checkpoint": checkpoint_sha256(model_dir), "build": described},
                                    sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"{model_dir.resolve().name}-{key}"


def cached_build(model_dir: str | Path, options: EngineOptions) -> Path:
    """The artifact for `model_dir` under these options: found in the cache, or built into it first."""
    model_dir = Path(model_dir)
    out = cache_dir_for(model_dir, options)
    build_options = build_options_for(model_dir, options, out)
    if _is_current(out, build_options):
        logger.info("using the cached artifact %s for %s", out, model_dir)
        return out
    logger.info("building %s into the cache at %s (once; later loads reuse it)", model_dir, out)
    build(build_options, progress=True)
    return out


def _is_current(out: Path, options: BuildOptions) -> bool:
    if not (out / "manifest.json").is_file():
        return False
    try:
        manifest = read_manifest(out)
        check_files(out, manifest)
    except ValueError:
        return False
    plan = plan_build(options)
    return sorted(plan.keys.values()) == sorted(e.key for e in manifest.buckets)
