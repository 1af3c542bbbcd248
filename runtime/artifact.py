"""The artifact manifest: the one contract between the compile stage and the runtime.

    artifacts/<name>/
      manifest.json        this schema (schema_version first); nothing is read from file names
      weights.safetensors  one copy of every tensor the graphs name, plus the LM head, in the build dtype
      graphs/<bucket>.pt2  one compiled graph per bucket, carrying no weights
      tokenizer/           tokenizer.json, tokenizer_config.json, chat template, generation_config.json
      report.json          build facts: per-bucket compile seconds and sizes (informative only)

`read_manifest` parses and validates manifest.json; `check_files` compares the files with their
recorded sizes and sha256. At load the graphs and tokenizer files are hashed in full, and the
weights file by size and by the sha256 of its safetensors header (names, dtypes, shapes, offsets):
hashing gigabytes of weights on every start would cost seconds per GB. `check_files(deep=True)`
(gaudi-compile verify) hashes the weights too. Every problem is a ValueError, one sentence that
says what to rebuild.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.buckets import Bucket

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
KV_CACHE_LAYOUT = "[num_layers, 2 (k, v), num_blocks, block_size, num_kv_heads, head_dim]"
_REBUILD = "rebuild it with gaudi-compile build"


@dataclass(frozen=True)
class SourceInfo:
    path: str                 # the checkpoint directory the build read
    architecture: str         # e.g. "LlamaForCausalLM"
    config_sha256: str        # sha256 of its config.json


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool


@dataclass(frozen=True)
class KVCacheSpec:
    block_size: int           # tokens per block
    dtype: str                # torch dtype name, e.g. "bfloat16"
    num_layers: int
    num_kv_heads: int
    head_dim: int
    layout: str = KV_CACHE_LAYOUT   # num_blocks is chosen by the runtime at start-up

    def shape(self, num_blocks: int) -> tuple[int, ...]:
        return (self.num_layers, 2, num_blocks, self.block_size, self.num_kv_heads, self.head_dim)


@dataclass(frozen=True)
class BucketEntry:
    kind: str                 # "prefill" | "decode"
    batch: int
    query_len: int
    num_blocks: int           # block-table width
    file: str                 # graph file, relative to the artifact
    sha256: str
    size_bytes: int
    key: str                  # sha256 of everything the graph depends on: equal keys, reusable graph

    @property
    def bucket(self) -> Bucket:
        return Bucket(self.kind, self.batch, self.query_len, self.num_blocks)


@dataclass(frozen=True)
class WeightsEntry:
    file: str
    sha256: str
    size_bytes: int
    header_sha256: str        # sha256 of the safetensors header (8-byte length + JSON)
    lm_head: str              # stored name of the LM head weight (the embedding's when tied)
    aliases: dict[str, str] = field(default_factory=dict)   # FQN a graph may ask for -> stored name

    def stored_name(self, fqn: str) -> str:
        return self.aliases.get(fqn, fqn)


@dataclass(frozen=True)
class TokenizerEntry:
    dir: str                                               # relative to the artifact
    files: dict[str, str] = field(default_factory=dict)    # file name -> sha256


@dataclass(frozen=True)
class GenerationDefaults:
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    source: SourceInfo
    model: ModelDims
    target: str                       # "cpu" | "cuda" | "hpu"
    fingerprint: dict[str, str]       # what the graphs are tied to; checked by runtime/graphs/<target>
    dtype: str                        # weights and activations, e.g. "bfloat16"
    quantization: dict                # {"scheme": "none"}, or what compile/quantize.py manifest_section writes
    kv_cache: KVCacheSpec
    max_model_len: int
    max_num_seqs: int                 # largest decode bucket batch
    max_num_batched_tokens: int       # largest prefill bucket batch * query_len
    buckets: tuple[BucketEntry, ...]
    weights: WeightsEntry
    tokenizer: TokenizerEntry
    generation: GenerationDefaults

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: dict) -> "Manifest":
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"the artifact has manifest schema_version {version!r} and this runtime reads version "
                             f"{SCHEMA_VERSION}; {_REBUILD} from this version of gaudi-aot.")
        parts = dict(raw)
        nested = {"source": SourceInfo, "model": ModelDims, "kv_cache": KVCacheSpec, "weights": WeightsEntry,
                  "tokenizer": TokenizerEntry, "generation": GenerationDefaults}
        for name, section in nested.items():
            parts[name] = _section(section, raw.get(name), name)
        parts["buckets"] = tuple(_section(BucketEntry, b, "buckets") for b in raw.get("buckets") or ())
        if not parts["buckets"]:
            raise ValueError(f"the artifact's manifest lists no buckets; {_REBUILD}.")
        parts["generation"] = GenerationDefaults(tuple(parts["generation"].eos_token_ids),
                                                 parts["generation"].bos_token_id)
        return _section(cls, parts, "manifest")


def _section(cls, raw, name: str):
    if not isinstance(raw, dict):
        raise ValueError(f"the artifact's manifest has no valid {name!r} section; {_REBUILD}.")
    try:
        return cls(**raw)
    except TypeError as err:
        raise ValueError(f"the artifact's manifest section {name!r} is malformed ({err}); {_REBUILD}.") from None


def read_manifest(path: str | Path) -> Manifest:
    """Parse and validate `path`/manifest.json; ValueError if `path` is not a readable artifact."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; pass an artifact directory built by gaudi-compile build.")
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; pass an artifact directory built by gaudi-compile build.")
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise ValueError(f"{path} is not an artifact (it has no {MANIFEST_FILE}); build one with "
                         "gaudi-compile build MODEL_DIR.")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{file} is not valid JSON; the artifact is damaged: {_REBUILD}.") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{file} is not a manifest object; the artifact is damaged: {_REBUILD}.")
    return Manifest.from_dict(raw)


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_header_sha256(path: Path) -> str:
    """sha256 of a safetensors file's header: its 8-byte little-endian length and the JSON it prefixes."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            return ""
        (length,) = struct.unpack("<Q", prefix)
        return hashlib.sha256(prefix + f.read(min(length, 100 << 20))).hexdigest()


def _check_one(file: Path, sha256: str, size_bytes: int | None = None) -> None:
    if not file.is_file():
        raise ValueError(f"{file} is missing; the artifact is incomplete: {_REBUILD}.")
    if (size_bytes is not None and file.stat().st_size != size_bytes) or sha256_file(file) != sha256:
        raise ValueError(f"{file} does not match its sha256 in {MANIFEST_FILE} (changed or damaged); {_REBUILD}.")


def check_files(path: str | Path, manifest: Manifest, deep: bool = False) -> list[Path]:
    """Check every file the manifest names; returns the files checked. `deep` hashes the weights in full."""
    path = Path(path)
    checked = []
    for entry in manifest.buckets:
        _check_one(path / entry.file, entry.sha256, entry.size_bytes)
        checked.append(path / entry.file)
    for name, sha256 in manifest.tokenizer.files.items():
        _check_one(path / manifest.tokenizer.dir / name, sha256)
        checked.append(path / manifest.tokenizer.dir / name)
    weights = path / manifest.weights.file
    if deep:
        _check_one(weights, manifest.weights.sha256, manifest.weights.size_bytes)
    elif not weights.is_file():
        raise ValueError(f"{weights} is missing; the artifact is incomplete: {_REBUILD}.")
    elif weights.stat().st_size != manifest.weights.size_bytes or \
            safetensors_header_sha256(weights) != manifest.weights.header_sha256:
        raise ValueError(f"{weights} does not match {MANIFEST_FILE} (changed or damaged); {_REBUILD}.")
    checked.append(weights)
    return checked
