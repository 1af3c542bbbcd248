"""gaudi-compile build: a Hugging Face checkpoint directory -> an artifact directory (runtime/artifact.py).

    result = build(BuildOptions(model_dir=Path("ckpt"), target="cpu", dtype="bfloat16"))

Steps: plan the buckets and their keys (compile/build_plan.py), reuse every graph of the previous
build whose key is unchanged, trace and compile the others (compile/graph_jobs.py, through the
target), write the one weights file, copy the tokenizer, then report.json and, last,
manifest.json. A graph's key covers the checkpoint's config.json, the bucket, dtype, block size,
target, fingerprint, compiler settings and the source of the model and tracing code. The weights'
values are in no graph, so a retrained checkpoint of the same shape recompiles nothing.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from compile.artifact_writer import copy_tokenizer, write_manifest, write_weights
from compile.build_plan import GRAPHS_DIR, BuildOptions, BuildPlan, plan_build
from compile.graph_jobs import CompileResult, CompileTask, run_tasks
from runtime.artifact import MANIFEST_FILE, SCHEMA_VERSION, BucketEntry, GenerationDefaults, KVCacheSpec, \
    Manifest, ModelDims, SourceInfo, WeightsEntry, read_manifest, sha256_file
from runtime.buckets import Bucket

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"

__all__ = ["BuildOptions", "BuildResult", "build"]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: Manifest
    report: dict      # as written to report.json


def build(options: BuildOptions, progress: bool = True) -> BuildResult:
    """Build (or incrementally rebuild) the artifact; ValueError for anything the user must fix."""
    from compile.models.loader import load_generation_defaults, load_model

    start = time.perf_counter()
    plan = plan_build(options)
    out = plan.out_dir
    previous = _prepare_out_dir(out)
    reused = {b for b in plan.buckets if _is_reusable(out, previous.get(plan.keys[b]), plan.files[b])}
    logger.info("building %s for %s (%s): %d buckets, %d to compile, %d reused: %s", out, plan.target.name,
                plan.dtype, len(plan.buckets), len(plan.buckets) - len(reused), len(reused),
                ", ".join(b.name for b in plan.buckets))

    model = load_model(plan.model_dir, plan.dtype, plan.target.attention_backend)
    quantization = _quantize(plan, model) if options.quantization.is_enabled else None
    weights = write_weights(model, out)
    quantized_weights = str(out / weights.file) if quantization else None
    tasks = [CompileTask(str(plan.model_dir), plan.dtype, plan.target.name, b, options.block_size,
                         str(out / plan.files[b]), quantized_weights) for b in plan.buckets if b not in reused]
    serial_model = model.to(plan.target.device) if options.jobs == 1 and tasks else None
    results = {r.bucket: r for r in run_tasks(tasks, options.jobs, serial_model, progress)}
    del model, serial_model
    entries = tuple(BucketEntry(b.kind, b.batch, b.query_len, b.num_blocks, plan.files[b],
                                sha256_file(out / plan.files[b]), (out / plan.files[b]).stat().st_size, plan.keys[b])
                    for b in plan.buckets)
    _check_graph_constants(plan, out, entries, weights)
    _remove_stale_graphs(out, set(plan.files.values()))

    manifest = _manifest(plan, entries, weights, copy_tokenizer(plan.model_dir, out),
                         load_generation_defaults(plan.model_dir), quantization)
    report = _report(entries, results, weights.size_bytes, time.perf_counter() - start, options)
    if quantization is not None:
        report["fp8_quality"] = quantization.report
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    write_manifest(manifest, out)
    plan.target.finish_artifact(out)
    logger.info("built %s in %.1f s: %d graphs compiled, %d reused", out, report["total_s"],
                report["num_compiled"], report["num_reused"])
    return BuildResult(out, manifest, report)


def _quantize(plan: BuildPlan, model):
    """FP8: calibrate and quantise `model` in place (on the target's device, where its FP8 kernels run)."""
    from compile.quantize import quantize_for_build
    from runtime.tokenizer import Tokenizer

    model.to(plan.target.device)
    return quantize_for_build(model, plan.options.quantization, plan.target.name, Tokenizer.from_dir(plan.model_dir),
                              plan.max_model_len)


def _manifest(plan: BuildPlan, entries, weights: WeightsEntry, tokenizer, generation, quantization) -> Manifest:
    cfg = plan.config
    kv_dtype = "float8_e4m3fn" if plan.options.quantization.kv_cache_dtype == "fp8" else plan.dtype
    return Manifest(
        schema_version=SCHEMA_VERSION,
        source=SourceInfo(str(plan.model_dir.resolve()), cfg.architecture, plan.config_sha256),
        model=ModelDims(cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads,
                        cfg.head_dim, cfg.tie_word_embeddings),
        target=plan.target.name, fingerprint=plan.fingerprint, dtype=plan.dtype,
        quantization=quantization.manifest if quantization else {"scheme": "none"},
        kv_cache=KVCacheSpec(plan.options.block_size, kv_dtype, cfg.num_hidden_layers, cfg.num_key_value_heads,
                             cfg.head_dim),
        max_model_len=plan.max_model_len,
        max_num_seqs=max(e.batch for e in entries if e.kind == "decode"),
        max_num_batched_tokens=max(e.batch * e.query_len for e in entries if e.kind == "prefill"),
        buckets=entries, weights=weights, tokenizer=tokenizer,
        generation=GenerationDefaults(tuple(generation.eos_token_ids), generation.bos_token_id))


def _prepare_out_dir(out: Path) -> dict[str, BucketEntry]:
    """Create `out`; return the previous build's graphs by key, and drop its manifest until this build ends."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory; pick another output with -o.")
    if out.is_dir() and any(out.iterdir()) and not ((out / MANIFEST_FILE).exists() or (out / GRAPHS_DIR).is_dir()):
        raise ValueError(f"{out} exists, is not empty and is not an artifact; pick another output with -o.")
    (out / GRAPHS_DIR).mkdir(parents=True, exist_ok=True)
    previous: dict[str, BucketEntry] = {}
    if (out / MANIFEST_FILE).is_file():
        try:
            previous = {e.key: e for e in read_manifest(out).buckets}
        except ValueError:
            logger.info("the previous manifest in %s is unreadable; rebuilding every graph", out)
        (out / MANIFEST_FILE).unlink()
    return previous


def _is_reusable(out: Path, entry: BucketEntry | None, file: str) -> bool:
    return entry is not None and entry.file == file and (out / file).is_file() \
        and (out / file).stat().st_size == entry.size_bytes and sha256_file(out / file) == entry.sha256


def _check_graph_constants(plan: BuildPlan, out: Path, entries, weights: WeightsEntry) -> None:
    """Every weight a graph names must be in the weights file: the runtime binds them by name."""
    from safetensors import safe_open

    from runtime.graphs import get_backend

    backend = get_backend(plan.target.name)
    with safe_open(str(out / weights.file), framework="pt") as f:
        stored = set(f.keys())
    for entry in entries:
        names = backend.load(out / entry.file).constant_fqns()
        missing = [n for n in names if weights.stored_name(n) not in stored]
        if missing:
            raise RuntimeError(f"graph {entry.file} needs weights {missing[:3]} that the weights file lacks")


def _remove_stale_graphs(out: Path, keep: set[str]) -> None:
    """Drop graphs of buckets no longer built, and partial outputs of an interrupted build."""
    for path in (out / GRAPHS_DIR).iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif f"{GRAPHS_DIR}/{path.name}" not in keep:
            path.unlink()


def _report(entries, results: dict[Bucket, CompileResult], weights_bytes: int, total_s: float,
            options: BuildOptions) -> dict:
    rows = []
    for e in entries:
        r = results.get(e.bucket)
        rows.append({"bucket": e.bucket.name, "status": "compiled" if r else "reused", "file": e.file,
                     "size_bytes": e.size_bytes, "export_s": r.export_s if r else 0.0,
                     "compile_s": r.compile_s if r else 0.0})
    return {"total_s": round(total_s, 2), "num_compiled": len(results), "num_reused": len(entries) - len(results),
            "jobs": options.jobs, "weights_bytes": weights_bytes,
            "graphs_bytes": sum(e.size_bytes for e in entries), "buckets": rows, **options.notes}
