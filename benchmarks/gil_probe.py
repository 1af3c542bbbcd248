"""Does running a compiled graph hold Python's GIL? How fast a pure-Python loop runs beside it.

    OMP_NUM_THREADS=1 python benchmarks/gil_probe.py ARTIFACT [--seconds 2]

One thread runs the artifact's largest decode graph over and over (one intra-op thread, so a core
is left free); the main thread counts iterations of an empty Python loop and reports them as a
share of the count with nothing else running. For comparison the same with `torch.mm`, which
releases the GIL. A share near 1 means the graph lets other Python threads run (the server's
event loop among them); a share well below it means they wait for each graph run.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def loop_rate(seconds: float) -> float:
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += 1
    return count / seconds


def share_beside(work, seconds: float, idle: float) -> float:
    stop = threading.Event()

    def run() -> None:
        with torch.inference_mode():
            while not stop.is_set():
                work()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    busy = loop_rate(seconds)
    stop.set()
    thread.join()
    return busy / idle


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)

    import runtime
    from runtime.model_inputs import StepRow, build_model_inputs

    torch.set_num_threads(1)
    engine = runtime.load(args.artifact)
    executor, kv_cache = engine.runner.executor, engine.runner.kv_cache
    bucket = max((b for b in executor.buckets if b.kind == "decode"), key=lambda b: (b.batch, -b.num_blocks))
    rows = [StepRow([5], 8, [1 + b]) for b in range(bucket.batch)]
    launch = executor.plan(rows, is_prefill=False)[0]
    inputs = build_model_inputs(launch.chunks, executor.block_size, *launch.shape)
    matrix = torch.randn(1024, 1024)
    idle = loop_rate(args.seconds)
    graph = share_beside(lambda: executor.forward(inputs, launch, kv_cache), args.seconds, idle)
    matmul = share_beside(lambda: matrix @ matrix, args.seconds, idle)
    print(f"Python loop speed beside {launch.name} graph runs: {graph:.2f} of idle; beside torch.mm: {matmul:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
