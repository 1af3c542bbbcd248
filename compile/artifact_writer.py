"""Writing an artifact's files besides the graphs: the one weights file, the tokenizer, the manifest."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from runtime.artifact import MANIFEST_FILE, Manifest, TokenizerEntry, WeightsEntry, safetensors_header_sha256, \
    sha256_file

WEIGHTS_FILE = "weights.safetensors"
TOKENIZER_DIR = "tokenizer"
# what the runtime's Tokenizer reads from a checkpoint folder (chat_templates/ holds named templates)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")


def write_weights(model: torch.nn.Module, out_dir: Path) -> WeightsEntry:
    """Every parameter and buffer of `model` once, under its first FQN; later FQNs of a tied tensor are aliases.

    Buffers include the non-persistent RoPE `inv_freq`: graphs may name it as a constant, and it is
    not in a Hugging Face checkpoint.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_name: dict[int, str] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    for name, tensor in named:
        if id(tensor) in first_name:
            aliases[name] = first_name[id(tensor)]
            continue
        first_name[id(tensor)] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    path = out_dir / WEIGHTS_FILE
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    os.replace(partial, path)
    return WeightsEntry(file=WEIGHTS_FILE, sha256=sha256_file(path), size_bytes=path.stat().st_size,
                        header_sha256=safetensors_header_sha256(path),
                        lm_head=aliases.get("lm_head.weight", "lm_head.weight"), aliases=aliases)


def copy_tokenizer(model_dir: Path, out_dir: Path) -> TokenizerEntry:
    """Copy the checkpoint's tokenizer files into out_dir/tokenizer/ and record their sha256."""
    if not (model_dir / "tokenizer.json").is_file():
        raise ValueError(f"{model_dir} has no tokenizer.json; save the checkpoint's tokenizer with "
                         "tokenizer.save_pretrained(...) (a fast tokenizer) and build again.")
    dest = out_dir / TOKENIZER_DIR
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    names = [n for n in TOKENIZER_FILES if (model_dir / n).is_file()]
    names += [f"chat_templates/{p.name}" for p in sorted((model_dir / "chat_templates").glob("*.jinja"))]
    files = {}
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / name, dest / name)
        files[name] = sha256_file(dest / name)
    return TokenizerEntry(dir=TOKENIZER_DIR, files=files)


def write_manifest(manifest: Manifest, out_dir: Path) -> Path:
    """Write manifest.json last and atomically: a directory with a manifest is a complete artifact."""
    path = out_dir / MANIFEST_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_text(manifest.to_json())
    os.replace(partial, path)
    return path
