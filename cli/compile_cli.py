"""gaudi-compile: build an artifact from a checkpoint, inspect one, verify one."""
from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import setup_logging, user_errors


def _prefill_shapes(ctx, param, values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    shapes = []
    for item in (v for value in values for v in value.split(",") if v.strip()):
        batch, sep, query_len = item.strip().lower().partition("x")
        if not (sep and batch.isdigit() and query_len.isdigit()):
            raise click.BadParameter(f"{item!r} is not BATCHxQUERY_LEN, e.g. 1x128,4x128.")
        shapes.append((int(batch), int(query_len)))
    return tuple(shapes)


def _int_list(ctx, param, values: tuple[str, ...]) -> tuple[int, ...]:
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if not all(v.isdigit() for v in items):
        raise click.BadParameter(f"{','.join(items)!r} is not a list of integers, e.g. 1,4,16.")
    return tuple(int(v) for v in items)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Compile a Hugging Face checkpoint into a gaudi-aot artifact, and look into artifacts."""


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Artifact directory [default: artifacts/<model dir name>-<target>-<dtype>].")
@click.option("--target", type=click.Choice(["cpu", "cuda", "hpu"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True, help="auto: the checkpoint's dtype (float32 unless it is bfloat16).")
@click.option("--max-model-len", type=click.IntRange(min=1), default=None,
              help="Longest sequence [default: the model's limit, at most 1024].")
@click.option("--max-num-seqs", type=click.IntRange(min=1), default=16, show_default=True,
              help="Largest decode batch.")
@click.option("--max-num-batched-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Largest prefill batch x query length.")
@click.option("--block-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Tokens per KV-cache block.")
@click.option("--bucket-strategy", type=click.Choice(["exp", "linear"]), default=None,
              help="Space buckets by powers of two or linearly [default: a few wide buckets].")
@click.option("--prefill-buckets", multiple=True, callback=_prefill_shapes,
              help="Explicit prefill shapes, BATCHxQUERY_LEN, e.g. 1x128,4x128.")
@click.option("--decode-buckets", multiple=True, callback=_int_list, help="Explicit decode batches, e.g. 1,4,16.")
@click.option("--context-blocks", "--decode-context-blocks", "context_blocks", multiple=True, callback=_int_list,
              help="Block-table widths besides the full one, for every bucket [default: a quarter of the full one].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Buckets compiled in parallel processes (on 2 cores, 1 is as fast).")
@click.option("--quant", type=click.Choice(["none", "fp8"]), default="none", show_default=True,
              help="fp8: decoder linear weights in float8_e4m3fn with per-channel scales and calibrated "
                   "activation scales; embeddings, lm_head and norms stay in --dtype.")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="Calibration text: one prompt per line, or .jsonl with a \"text\" field per line "
                   "[default: a built-in varied set].")
@click.option("--calib-samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Calibration texts used (the first N).")
@click.option("--kv-cache-dtype", type=click.Choice(["auto", "fp8"]), default="auto", show_default=True,
              help="fp8: KV cache in float8_e4m3fn with per-layer scales from calibration; auto: --dtype.")
@click.option("--fp8-embeddings", is_flag=True,
              help="With --quant fp8: the embedding table in float8_e4m3fn too, one scale per row.")
@click.option("--log-level", default="INFO", show_default=True)
@user_errors
def build(model_dir, output, target, dtype, max_model_len, max_num_seqs, max_num_batched_tokens, block_size,
          bucket_strategy, prefill_buckets, decode_buckets, context_blocks, jobs, quant, calib_data,
          calib_samples, kv_cache_dtype, fp8_embeddings, log_level) -> None:
    """Build an artifact from MODEL_DIR (a Hugging Face checkpoint directory)."""
    setup_logging(log_level)
    from compile.build import BuildOptions
    from compile.build import build as run_build
    from compile.fp8_report import quality_summary
    from compile.quantize import QuantConfig

    quantization = QuantConfig(scheme=quant, kv_cache_dtype=kv_cache_dtype, calib_data=calib_data,
                               calib_samples=calib_samples, quantize_embeddings=fp8_embeddings)
    result = run_build(BuildOptions(
        model_dir=model_dir, out_dir=output, target=target, dtype=dtype, max_model_len=max_model_len,
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, block_size=block_size,
        bucket_strategy=bucket_strategy, prefill_buckets=prefill_buckets, decode_buckets=decode_buckets,
        context_blocks=context_blocks, jobs=jobs, quantization=quantization))
    report = result.report
    click.echo(f"built {result.path}: {len(result.manifest.buckets)} graphs ({report['num_compiled']} compiled, "
               f"{report['num_reused']} reused) in {report['total_s']:.1f} s; weights "
               f"{report['weights_bytes'] / 1e6:.1f} MB, graphs {report['graphs_bytes'] / 1e6:.1f} MB")
    if "fp8_quality" in report:
        click.echo(f"FP8 quality: {quality_summary(report['fp8_quality'])}")


def _runs_here(manifest) -> str:
    from runtime.graphs import get_backend

    try:
        get_backend(manifest.target).check_fingerprint(manifest.fingerprint)
    except ValueError as err:
        return f"no: {err}"
    return "yes"


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the build report as JSON.")
@user_errors
def inspect(artifact: Path, as_json: bool) -> None:
    """What ARTIFACT is, what it runs on, its buckets and its build report."""
    from dataclasses import asdict

    from compile.fp8_report import quality_summary, quantization_summary
    from runtime.artifact import read_manifest

    manifest = read_manifest(artifact)
    report_file = artifact / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    runs_here = _runs_here(manifest)
    if as_json:
        click.echo(json.dumps({"manifest": asdict(manifest), "report": report, "runs_here": runs_here}, indent=2))
        return
    m, kv = manifest.model, manifest.kv_cache
    fingerprint = ", ".join(f"{k} {v}" for k, v in manifest.fingerprint.items() if v)
    rows = [("artifact", str(artifact)),
            ("model", f"{manifest.source.architecture} from {manifest.source.path}"),
            ("dims", f"vocab {m.vocab_size}, hidden {m.hidden_size}, {m.num_layers} layers, "
                     f"{m.num_kv_heads} KV heads x {m.head_dim}{', tied embeddings' if m.tie_word_embeddings else ''}"),
            ("target", f"{manifest.target} ({fingerprint})"),
            ("runs here", runs_here),
            ("dtype", f"{manifest.dtype}, KV cache {kv.dtype}"),
            ("quant", quantization_summary(manifest.quantization)),
            ("limits", f"max_model_len {manifest.max_model_len}, max_num_seqs {manifest.max_num_seqs}, "
                       f"max_num_batched_tokens {manifest.max_num_batched_tokens}, block_size {kv.block_size}"),
            ("weights", f"{manifest.weights.file} {manifest.weights.size_bytes / 1e6:.1f} MB")]
    if report:
        rows.append(("build", f"{report['total_s']:.1f} s, {report['num_compiled']} graphs compiled, "
                              f"{report['num_reused']} reused"))
    if "fp8_quality" in report:
        rows.append(("quality", quality_summary(report["fp8_quality"])))
    for key, value in rows:
        click.echo(f"{key:<10} {value}")
    seconds = {r["bucket"]: r["export_s"] + r["compile_s"] for r in report.get("buckets", [])}
    click.echo(f"{'buckets':<10} {'name':<24} {'batch':>5} {'query':>5} {'blocks':>6} {'MB':>6} {'build s':>8}")
    for entry in manifest.buckets:
        b = entry.bucket
        click.echo(f"{'':<10} {b.name:<24} {b.batch:>5} {b.query_len:>5} {b.num_blocks:>6} "
                   f"{entry.size_bytes / 1e6:>6.1f} {seconds.get(b.name, 0.0):>8.1f}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@user_errors
def verify(artifact: Path) -> None:
    """Check that every file ARTIFACT's manifest names is present and matches its sha256 (exit 0, else 2)."""
    from runtime.artifact import check_files, read_manifest

    manifest = read_manifest(artifact)
    checked = check_files(artifact, manifest, deep=True)
    click.echo(f"ok: {artifact} ({len(checked)} files match manifest.json; runs here: {_runs_here(manifest)})")


if __name__ == "__main__":
    main()
