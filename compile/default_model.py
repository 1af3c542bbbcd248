"""The built-in default model: a Llama checkpoint made locally, with no downloads, for the demo and benchmarks.

    python -m compile.default_model --out DIR [--size tiny|30m|200m] [--train-steps N] [--seed 0]

writes a Hugging Face Llama checkpoint directory (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json with a Llama 3 chat template,
README.md) that transformers and compile.models.loader both load. The tokenizer is a byte-level
BPE trained on Python's help topics (compile.default_corpus). `tiny` is trained on the same text
for a fixed number of steps, so it writes English about Python; `30m` and `200m` keep their
random initial weights unless --train-steps is given, and exist to measure speed, not quality.
Everything is deterministic given the options, which are stored in a stamp file: a second run
with the same options finds the stamp and skips.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from compile.default_corpus import chat_examples, corpus_sha256, training_documents
from compile.default_sizes import SIZES, ModelShape, make_model
from compile.default_tokenizer import BOS, EOS, STOP_TOKENS, save_tokenizer, special_token_ids, train_tokenizer
from compile.default_training import TrainingConfig, TrainingResult, default_num_threads, train

logger = logging.getLogger(__name__)

STAMP_FILE = "default_model_stamp.json"
STAMP_VERSION = 1
SAMPLE_PROMPT = 'The "for" statement'
SAMPLE_QUESTION = 'What is the "for" statement?'


DEFAULT_TRAIN_STEPS = {"tiny": 800, "30m": 0, "200m": 0}
# tiny is small and trained: float32 keeps it exact and fast on CPUs without bf16 units. The benchmark
# sizes are saved as bf16, the dtype serving stacks run, which also halves the file.
DEFAULT_DTYPES = {"tiny": "float32", "30m": "bfloat16", "200m": "bfloat16"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class DefaultModelOptions:
    """What to build. train_steps and dtype default per size; `shape` replaces the size's shape (tests)."""

    size: str = "tiny"
    train_steps: int | None = None
    seed: int = 0
    dtype: str | None = None
    num_threads: int | None = None   # None: up to 2, as many as are idle (default_num_threads)
    shape: ModelShape | None = None
    training: TrainingConfig | None = None

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size {self.size!r} is not known; choose one of {', '.join(SIZES)}.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; choose one of {', '.join(DTYPES)}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}.")
        TrainingConfig(num_steps=self.steps)  # validates train_steps

    @property
    def steps(self) -> int:
        return DEFAULT_TRAIN_STEPS[self.size] if self.train_steps is None else self.train_steps

    @property
    def resolved_shape(self) -> ModelShape:
        return self.shape or SIZES[self.size]

    @property
    def resolved_dtype(self) -> str:
        return self.dtype or DEFAULT_DTYPES[self.size]

    @property
    def training_config(self) -> TrainingConfig:
        return replace(self.training or TrainingConfig(num_steps=0), num_steps=self.steps, seed=self.seed)

    def stamp(self) -> dict:
        """Everything the written files depend on; equal stamps mean an identical build."""
        return {"stamp_version": STAMP_VERSION, "size": self.size, "seed": self.seed, "dtype": self.resolved_dtype,
                "shape": asdict(self.resolved_shape), "training": self.training_config.as_dict(),
                "corpus_sha256": corpus_sha256(), "torch": torch.__version__.split("+")[0]}


@dataclass(frozen=True)
class BuildReport:
    path: Path
    skipped: bool                      # True when a complete build with the same options was found
    num_parameters: int
    is_random: bool                    # weights are the random initialisation
    training: TrainingResult | None = None
    samples: tuple[str, ...] = ()      # greedy continuations printed after training


def find_complete_build(out_dir: Path, stamp: dict) -> dict | None:
    """The stamp record in `out_dir` if it was made with `stamp` and all its files are there at their sizes."""
    try:
        record = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("options") != stamp:
        return None
    files = record.get("files", {})
    ok = all((out_dir / name).is_file() and (out_dir / name).stat().st_size == size for name, size in files.items())
    return record if files and ok else None


def token_stream(tokenizer) -> list[int]:
    """The training tokens: each topic's opening as bos ... eos, then each chat rendered by the chat template."""
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    ids: list[int] = []
    for text in training_documents():
        ids += tokenizer.encode(text, add_special_tokens=True) + [eos_id]
    for conversation in chat_examples():
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=False)
        ids += tokenizer.encode(prompt, add_special_tokens=False)
    return ids


def greedy_samples(model, tokenizer, max_new_tokens: int = 48) -> tuple[str, ...]:
    """A plain-text continuation and a chat reply, both greedy."""
    prompts = [tokenizer.encode(SAMPLE_PROMPT),
               tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": SAMPLE_QUESTION}]),
                                add_special_tokens=False)]
    samples = []
    for ids in prompts:
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=model.config.bos_token_id)
        samples.append(tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))
    return tuple(samples)


def readme(options: DefaultModelOptions, num_parameters: int, result: TrainingResult | None) -> str:
    shape = options.resolved_shape
    lines = [f"# gaudi-aot default model: {options.size}", "",
             f"A Llama-architecture checkpoint with {num_parameters:,} parameters ({shape.num_layers} layers, hidden "
             f"{shape.hidden_size}, {shape.num_heads} heads / {shape.num_kv_heads} kv heads, vocab {shape.vocab_size}, "
             f"{'tied' if shape.tie_word_embeddings else 'untied'} embeddings), saved as {options.resolved_dtype}.",
             "Tokenizer: byte-level BPE trained on Python's help topics (pydoc_data.topics); Llama 3 special "
             "tokens and chat template.", ""]
    if result is None:
        lines += ["**The weights are RANDOM (untrained).** This checkpoint is for speed benchmarks only; "
                  "its text output is meaningless."]
    else:
        lines += [f"Trained for {options.steps} steps ({result.num_tokens:,} tokens) on Python's help topics with "
                  f"seed {options.seed}; final training loss {result.final_loss:.3f}. A toy that recites and "
                  'recombines that text: chat questions naming a help topic ("Tell me about lambdas.") get the '
                  "closest answers."]
    return "\n".join(lines + ["", f"Made by `python -m compile.default_model --size {options.size}`; "
                              "the options are in " + STAMP_FILE + "."]) + "\n"


def _write(tmp: Path, options: DefaultModelOptions) -> BuildReport:
    from runtime.tokenizer import Tokenizer
    shape = options.resolved_shape
    save_tokenizer(train_tokenizer(shape.vocab_size), tmp)
    tokenizer = Tokenizer.from_dir(tmp)
    specials = special_token_ids(tokenizer.backend)
    eos_ids = [specials[t] for t in STOP_TOKENS]
    model = make_model(shape, specials[BOS], eos_ids, options.seed)
    num_parameters = sum(p.numel() for p in model.parameters())
    logger.info("default model %s: %s parameters", options.size, f"{num_parameters:,}")
    result, samples = None, ()
    if options.steps > 0:
        previous_threads = torch.get_num_threads()
        num_threads = options.num_threads or default_num_threads()
        torch.set_num_threads(num_threads)
        logger.info("training on %d CPU thread(s)", num_threads)
        try:
            result = train(model, token_stream(tokenizer), options.training_config)
            samples = greedy_samples(model, tokenizer)
        finally:
            torch.set_num_threads(previous_threads)
        logger.info("trained %d steps in %.1f s, final loss %.3f", options.steps, result.elapsed_s, result.final_loss)
        for prompt, sample in zip((SAMPLE_PROMPT, SAMPLE_QUESTION), samples):
            logger.info("greedy sample: %s -> %r", prompt, sample)
    model.to(DTYPES[options.resolved_dtype]).save_pretrained(tmp, safe_serialization=True)
    generation = {"bos_token_id": specials[BOS], "eos_token_id": eos_ids}
    (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    (tmp / "README.md").write_text(readme(options, num_parameters, result))
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    record = {"options": options.stamp(), "files": files, "num_parameters": num_parameters,
              "weights": "random" if result is None else "trained",
              "final_loss": None if result is None else round(result.final_loss, 4)}
    (tmp / STAMP_FILE).write_text(json.dumps(record, indent=2) + "\n")  # written last: marks the build complete
    return BuildReport(path=tmp, skipped=False, num_parameters=num_parameters, is_random=result is None,
                       training=result, samples=samples)


def build_default_model(out_dir: str | Path, options: DefaultModelOptions | None = None) -> BuildReport:
    """Write the default checkpoint into `out_dir`, or skip when a complete build with the same options is there.

    Builds into a hidden sibling folder and moves it into place at the end, so `out_dir` never
    holds a half-written checkpoint. Refuses to replace a non-empty folder this module did not make.
    """
    options = options or DefaultModelOptions()
    out_dir = Path(out_dir)
    record = find_complete_build(out_dir, options.stamp())
    if record is not None:
        logger.info("%s already holds the default %s model made with these options; skipping.", out_dir, options.size)
        return BuildReport(path=out_dir, skipped=True, num_parameters=record["num_parameters"],
                           is_random=record["weights"] == "random")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / STAMP_FILE).exists())):
        raise ValueError(f"{out_dir} exists and is not a default-model folder; pass a new or empty directory.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = _write(tmp, options)
        if out_dir.exists():
            shutil.rmtree(out_dir)   # an earlier default-model build with other options
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return replace(report, path=out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile.default_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="model size (default: tiny)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help=f"training steps (default: {DEFAULT_TRAIN_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help=f"saved weight dtype (default: {DEFAULT_DTYPES})")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="CPU threads for training (default: 2, or 1 when the machine is busy)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s [%(name)s] %(message)s")
    try:
        options = DefaultModelOptions(size=args.size, train_steps=args.train_steps, seed=args.seed,
                                      dtype=args.dtype, num_threads=args.num_threads)
        report = build_default_model(args.out, options)
    except ValueError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    kind = "RANDOM weights, for benchmarks only" if report.is_random else "trained"
    print(f"{report.path}: default {options.size} model, {report.num_parameters:,} parameters, {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
