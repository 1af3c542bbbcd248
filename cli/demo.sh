#!/usr/bin/env bash
# make demo: the whole promise in one command, on the built-in default model.
#   1. create the default checkpoint (trained locally on Python's own docs; no downloads)
#   2. compile it into an artifact with gaudi-compile build
#   3. run the offline example of the vLLM guide on the artifact
#   4. serve it with gaudi-run serve, query it with curl (a completion, a streamed chat), stop it
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CKPT=artifacts/checkpoints/gaudi-tiny
ART=artifacts/gaudi-tiny-cpu
PORT=${DEMO_PORT:-8765}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/4 default model -> $CKPT"
$BIN/python -m compile.default_model --out "$CKPT" --size tiny

step "2/4 gaudi-compile build $CKPT -o $ART"
$BIN/gaudi-compile build "$CKPT" -o "$ART"
$BIN/gaudi-compile inspect "$ART"

step "3/4 offline batch (the guide's example)"
$BIN/python cli/examples/offline_inference.py "$ART"

step "4/4 gaudi-run serve $ART on 127.0.0.1:$PORT"
$BIN/gaudi-run serve "$ART" --host 127.0.0.1 --port "$PORT" --served-model-name gaudi-tiny &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "the server exited before it was ready" >&2; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null

echo "-- POST /v1/completions"
curl -sf "http://127.0.0.1:$PORT/v1/completions" -H "Content-Type: application/json" -d '{
    "model": "gaudi-tiny", "prompt": "The list type in Python", "max_tokens": 40, "temperature": 0
  }' | $BIN/python -c 'import json,sys; r=json.load(sys.stdin); print(r["choices"][0]["text"]); print("usage:", r["usage"])'

echo "-- POST /v1/chat/completions (stream)"
curl -sfN "http://127.0.0.1:$PORT/v1/chat/completions" -H "Content-Type: application/json" -d '{
    "model": "gaudi-tiny", "stream": true, "max_tokens": 40, "temperature": 0,
    "messages": [{"role": "system", "content": "You are a helpful assistant."},
                 {"role": "user", "content": "What does the with statement do?"}]
  }' | $BIN/python -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: ") and line != "data: [DONE]":
        delta = json.loads(line[6:])["choices"][0]["delta"]
        print(delta.get("content") or "", end="", flush=True)
    elif line == "data: [DONE]":
        print("\n[DONE]")
'

kill -TERM $SERVER
wait $SERVER
trap - EXIT
step "demo finished"
