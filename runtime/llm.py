"""LLM: the vLLM-compatible offline API (`LLM(model=...)`, `generate`, `chat`)."""
from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from typing import Any

from runtime.config import EngineOptions
from runtime.engine import LLMEngine
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

# vLLM constructor arguments that have no meaning here; accepted so vLLM code runs unchanged
_IGNORED_VLLM_ARGS = {"gpu_memory_utilization", "trust_remote_code", "swap_space",
                      "disable_log_stats", "tokenizer_mode", "revision", "download_dir", "load_format"}


class LLM:
    """Offline batched generation, as vLLM's `LLM`.

    model: a built artifact directory, or a Hugging Face checkpoint directory (built once into
    a cache, then loaded). enforce_eager runs a checkpoint's nn.Module instead (vLLM's name:
    no compiled graphs); compile_cache_dir is where checkpoints are built (~/.cache/gaudi-aot).
    max_num_seqs None takes the artifact's largest decode batch.
    """

    def __init__(self, model: str, tokenizer: str | None = None, dtype: str = "auto",
                 max_model_len: int | None = None, max_num_seqs: int | None = None, seed: int | None = 0,
                 block_size: int = 16, max_num_batched_tokens: int | None = None,
                 enable_prefix_caching: bool = True, tensor_parallel_size: int = 1,
                 kv_cache_memory_bytes: int | None = None, num_kv_blocks: int | None = None,
                 enforce_eager: bool = False, compile_cache_dir: str | None = None, **kwargs: Any):
        from runtime.loading import load
        unknown = set(kwargs) - _IGNORED_VLLM_ARGS
        if unknown:
            raise ValueError(f"LLM() got unsupported argument(s) {', '.join(sorted(unknown))}; remove them.")
        if tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size must be 1: this runtime serves one device per process.")
        if tokenizer not in (None, model):
            raise ValueError("a separate tokenizer path is not supported; the model directory carries its tokenizer.")
        options = EngineOptions(dtype=dtype, max_model_len=max_model_len, max_num_seqs=max_num_seqs, seed=seed,
                                block_size=block_size, max_num_batched_tokens=max_num_batched_tokens,
                                enable_prefix_caching=enable_prefix_caching, num_kv_blocks=num_kv_blocks,
                                enforce_eager=enforce_eager, compile_cache_dir=compile_cache_dir,
                                **({"kv_cache_memory_bytes": kv_cache_memory_bytes} if kv_cache_memory_bytes else {}))
        self.llm_engine: LLMEngine = load(model, options)

    def get_tokenizer(self):
        return self.llm_engine.tokenizer

    def generate(self, prompts, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        """Generate for a prompt or a list of prompts; outputs in input order.

        A prompt is a string, or a dict with "prompt" or "prompt_token_ids". `sampling_params`
        is one SamplingParams for all, or one per prompt (default: SamplingParams()).
        """
        return run_to_completion(self.llm_engine, prompts, sampling_params, use_tqdm)

    def chat(self, messages, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
             use_tqdm: bool = True, chat_template: str | None = None, add_generation_prompt: bool = True,
             **template_kwargs: Any) -> list[RequestOutput]:
        """Generate replies to one conversation (a list of messages) or a list of conversations."""
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts, or a list of such lists.")
        conversations = messages if isinstance(messages[0], list) else [messages]
        tok = self.llm_engine.tokenizer
        prompts = [{"prompt": tok.apply_chat_template(conv, add_generation_prompt=add_generation_prompt,
                                                      chat_template=chat_template, **template_kwargs),
                    "add_special_tokens": False}
                   for conv in conversations]
        return run_to_completion(self.llm_engine, prompts, sampling_params, use_tqdm)


def _normalise(prompt) -> tuple[str | None, list[int] | None, bool]:
    if isinstance(prompt, str):
        return prompt, None, True
    if isinstance(prompt, dict) and ("prompt" in prompt or "prompt_token_ids" in prompt):
        return prompt.get("prompt"), prompt.get("prompt_token_ids"), prompt.get("add_special_tokens", True)
    raise ValueError("each prompt must be a string or a dict with 'prompt' or 'prompt_token_ids'.")


def run_to_completion(engine: LLMEngine, prompts, sampling_params, use_tqdm: bool) -> list[RequestOutput]:
    if isinstance(prompts, (str, dict)):
        prompts = [prompts]
    prompts = list(prompts)
    if sampling_params is None:
        sampling_params = SamplingParams()
    params = list(sampling_params) if isinstance(sampling_params, Seq) else [sampling_params] * len(prompts)
    if len(params) != len(prompts):
        raise ValueError(f"got {len(params)} SamplingParams for {len(prompts)} prompts; pass one, or one per prompt.")
    # validate everything before anything runs: a bad prompt never stalls the batch
    staged = []
    for prompt, p in zip(prompts, params):
        text, ids, add_special = _normalise(prompt)
        if ids is None:
            ids = engine.tokenizer.encode(text, add_special_tokens=add_special)
        engine.validate_prompt(list(ids), p)
        staged.append((text, ids, p))
    req_ids = [engine.next_request_id("offline") for _ in staged]
    wanted = set(req_ids)
    for req_id, (text, ids, p) in zip(req_ids, staged):
        engine.add_request(req_id, text, ids, p)
    results: dict[str, RequestOutput] = {}
    bar = None
    if use_tqdm:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(staged), desc="Processed prompts", unit="prompt", dynamic_ncols=True)
    try:
        while len(results) < len(staged):
            for out in engine.step():
                if out.finished and out.request_id in wanted:
                    results[out.request_id] = out
                    if bar is not None:
                        bar.update(1)
    except BaseException:
        for req_id in req_ids:
            engine.abort_request(req_id)
        raise
    finally:
        if bar is not None:
            bar.close()
    return [results[r] for r in req_ids]
