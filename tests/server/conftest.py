"""Fixtures for the server tests: the real server, started the way users start it.

`server` runs `python -m runtime.entrypoints.openai.api_server` in a subprocess over the shared
tiny checkpoint, on 127.0.0.1 and a free port; every test in tests/server talks to it over HTTP.
`app_server` runs `create_app` under uvicorn in a thread of the test process, for options (an
API key) the shared server does not use.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct"  # the name the documentation's examples use
API_KEY = "secret-key"
# the in-process server's --chat-template
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, proc: subprocess.Popen | None = None, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was healthy")
        try:
            if requests.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} was not healthy after {timeout_s}s")


@dataclass
class RunningServer:
    base_url: str
    proc: subprocess.Popen | None
    log_path: Path | None = None

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def metrics(self) -> dict[str, float]:
        """/metrics samples by name (label sets summed), e.g. {"vllm:num_requests_running": 0.0}."""
        text = requests.get(f"{self.base_url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            match = re.match(r"([^{\s]+)(\{.*\})?\s+(\S+)$", line)
            name = match.group(1)
            if name.endswith("_bucket"):
                continue
            out[name] = out.get(name, 0.0) + float(match.group(3))
        return out


def start_server(checkpoint: Path, log_path: Path, *extra: str) -> RunningServer:
    port = free_port()
    cmd = [sys.executable, "-m", "runtime.entrypoints.openai.api_server", "--model", str(checkpoint),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL_NAME,
           "--uvicorn-log-level", "warning", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_healthy(server.base_url, proc)
    except BaseException:
        stop_server(server)
        raise RuntimeError(f"server did not start:\n{server.log()}") from None
    return server


def stop_server(server: RunningServer, timeout_s: float = 30.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="session")
def server(tiny_artifact, tmp_path_factory):
    """The real server over the tiny compiled artifact (max_model_len 256), shared by the session."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(tiny_artifact, log_path)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def openai_client(server):
    from openai import OpenAI
    return OpenAI(api_key="EMPTY", base_url=server.v1, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def app_server(tiny_artifact):
    """create_app(engine, api_key=API_KEY, chat_template=CHAT_TEMPLATE) under uvicorn, in a thread
    of this process."""
    import uvicorn

    import runtime
    from runtime.server import create_app

    app = create_app(runtime.load(tiny_artifact, max_num_seqs=8), served_model_name="tiny", api_key=API_KEY,
                     chat_template=CHAT_TEMPLATE)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    running = RunningServer(f"http://127.0.0.1:{port}", None)
    wait_healthy(running.base_url, timeout_s=60)
    yield running
    uv.should_exit = True
    thread.join(30)
