"""LLMEngine: the step loop. schedule -> run -> sample -> update -> detokenize.

The engine owns the scheduler (ids), the runner (tensors in, logits out), the sampler and the
requests. It does not know whether the model is eager or compiled: that is the runner's executor.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import torch

from runtime.detokenizer import IncrementalDetokenizer
from runtime.model_inputs import StepRow
from runtime.outputs import RequestOutput
from runtime.request import Request, SequenceText
from runtime.runner import Executor, ModelRunner
from runtime.sampler import Sampler, SamplingMetadata, compute_prompt_logprobs, make_generator
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from runtime.sequence import Sequence
from runtime.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the engine must know of the model, read from a manifest or a checkpoint."""
    name: str
    vocab_size: int
    max_model_len: int
    eos_token_ids: tuple[int, ...]


@dataclass
class EngineStats:
    num_running: int
    num_waiting: int
    kv_cache_usage: float          # fraction of KV blocks in use, 0..1
    prefix_cache_queries: int      # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int         # of those, tokens found cached
    num_preemptions: int


class LLMEngine:
    def __init__(self, executor: Executor, kv_cache: torch.Tensor, tokenizer: Tokenizer, info: ModelInfo,
                 scheduler_config: SchedulerConfig, seed: int | None = 0):
        self.tokenizer = tokenizer
        self.info = info
        self.model_name = info.name
        self.max_model_len = scheduler_config.max_model_len
        self.scheduler = Scheduler(scheduler_config)
        self.runner = ModelRunner(executor, kv_cache)
        self.sampler = Sampler(seed)
        self.requests: dict[str, Request] = {}
        self._generators: dict[int, torch.Generator | None] = {}
        self._seq_ids = itertools.count()
        self._req_ids = itertools.count()
        self._decode_cache: dict[int, str] = {}
        self.num_preemptions = 0

    # ---- requests -------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt: str | None, prompt_token_ids: list[int] | None,
                    params: SamplingParams, arrival_time: float | None = None) -> None:
        """Queue a request; raises ValueError for anything that could never run."""
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in use; give each request a unique id.")
        if prompt_token_ids is None:
            if prompt is None:
                raise ValueError("a request needs a prompt or prompt_token_ids.")
            prompt_token_ids = self.tokenizer.encode(prompt)
        prompt_token_ids = list(prompt_token_ids)
        self.validate_prompt(prompt_token_ids, params)
        seqs = [Sequence(seq_id=next(self._seq_ids), req_id=request_id, prompt_token_ids=prompt_token_ids,
                         sampling_params=params, index=i) for i in range(params.n)]
        req = Request(request_id, prompt, prompt_token_ids, params, seqs, self.info.eos_token_ids, self.max_model_len)
        if arrival_time is not None:
            req.metrics.arrival_time = arrival_time
        for seq in seqs:
            detok = (IncrementalDetokenizer(self.tokenizer, prompt_token_ids, params.skip_special_tokens)
                     if params.detokenize else None)
            want = params.logprobs is not None
            req.texts.append(SequenceText(detok, logprobs=[] if want else None, cumulative_logprob=0.0 if want else None))
            self._generators[seq.seq_id] = make_generator(params.seed, seq.index)
            if params.prompt_logprobs is not None:
                seq.use_prefix_cache = False  # cached blocks carry no logits to report
        if params.prompt_logprobs is not None:
            req.prompt_logprobs = [None]
        self.requests[request_id] = req
        for seq in seqs:
            self.scheduler.add(seq)

    def validate_prompt(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """The up-front checks: a non-empty prompt of known tokens that fits with its max_tokens."""
        if not prompt_token_ids:
            raise ValueError("the prompt is empty; give at least one token.")
        bad = [t for t in prompt_token_ids if not 0 <= t < self.info.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of vocabulary; ids must be in [0, {self.info.vocab_size}).")
        wanted = len(prompt_token_ids) + (params.max_tokens or 0)
        if len(prompt_token_ids) >= self.max_model_len or wanted > self.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{wanted} tokens ({len(prompt_token_ids)} in the prompt, {params.max_tokens or 0} in the "
                "completion). Please reduce the length of the prompt or completion."
            )
        params.verify_vocab(self.info.vocab_size)

    def abort_request(self, request_id: str) -> RequestOutput | None:
        """Stop a request now and free its KV blocks; returns its final output (None if unknown)."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return None
        self.scheduler.abort(request_id)
        for seq in req.seqs:
            self._generators.pop(seq.seq_id, None)
        req.abort()
        return req.output()

    def next_request_id(self, prefix: str = "req") -> str:
        return f"{prefix}-{next(self._req_ids)}"

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    # ---- the step -------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Run one scheduling step; returns the outputs of the requests that progressed."""
        sched = self.scheduler.schedule()
        self.num_preemptions += len(sched.preempted_seq_ids)
        if not sched.scheduled_seqs:
            return []
        seqs = [self.scheduler.get_sequence(row.seq_id) for row in sched.scheduled_seqs]
        now = time.time()
        for seq in seqs:
            metrics = self.requests[seq.req_id].metrics
            metrics.first_scheduled_time = metrics.first_scheduled_time or now
        rows = [StepRow(r.token_ids, r.start_pos, r.block_table) for r in sched.scheduled_seqs]
        want_prompt = {i for i, (r, s) in enumerate(zip(sched.scheduled_seqs, seqs))
                       if s.sampling_params.prompt_logprobs is not None and r.start_pos < s.num_prompt_tokens - 1}
        result = self.runner.execute(rows, sched.is_prefill, want_prompt)
        for i, logits in result.prompt_logits.items():
            self._add_prompt_logprobs(seqs[i], sched.scheduled_seqs[i].start_pos, logits)

        sampled_rows = [i for i, r in enumerate(sched.scheduled_seqs) if r.is_sampled]
        sampled_seqs = [seqs[i] for i in sampled_rows]
        tokens: dict[int, int] = {}
        logprobs = {}
        if sampled_rows:
            md = SamplingMetadata.build(
                [s.sampling_params for s in sampled_seqs], [s.prompt_token_ids for s in sampled_seqs],
                [s.output_token_ids for s in sampled_seqs], [self._generators[s.seq_id] for s in sampled_seqs],
                eos_token_ids=self.info.eos_token_ids)
            out = self.sampler(result.logits[sampled_rows], md)
            for seq, tok, lp in zip(sampled_seqs, out.sampled_token_ids, out.logprobs):
                tokens[seq.seq_id], logprobs[seq.seq_id] = tok, lp
        touched: dict[str, Request] = {}
        for seq in self.scheduler.update_from_output(sched, tokens):
            req = self.requests[seq.req_id]
            touched[req.req_id] = req
            tok = seq.output_token_ids[-1]
            if req.on_token(seq, tok, logprobs[seq.seq_id], self._decode_one):
                out = req.texts[seq.index]
                self.scheduler.finish(seq, out.finish_reason, out.stop_reason)
                self._generators.pop(seq.seq_id, None)
        outputs = []
        for req in touched.values():
            outputs.append(req.output())
            if req.finished:
                del self.requests[req.req_id]
        return outputs

    def _add_prompt_logprobs(self, seq: Sequence, start: int, logits: torch.Tensor) -> None:
        req = self.requests[seq.req_id]
        if seq.index != 0:
            return
        end = min(start + logits.shape[0], seq.num_prompt_tokens - 1)   # position p predicts prompt token p+1
        targets = seq.prompt_token_ids[start + 1: end + 1]
        dicts = compute_prompt_logprobs(logits[: end - start], targets, seq.sampling_params.prompt_logprobs)
        for d in dicts:
            for tid, lp in d.items():
                lp.decoded_token = self._decode_one(tid)
        req.prompt_logprobs.extend(dicts)

    def _decode_one(self, token_id: int) -> str:
        text = self._decode_cache.get(token_id)
        if text is None:
            text = self._decode_cache[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return text

    # ---- offline convenience -------------------------------------------------------------
    def generate(self, prompts, sampling_params: SamplingParams | list[SamplingParams] | None = None,
                 use_tqdm: bool = False) -> list[RequestOutput]:
        """Run prompts to completion; outputs in input order. See LLM.generate for accepted prompt forms."""
        from runtime.llm import run_to_completion
        return run_to_completion(self, prompts, sampling_params, use_tqdm)

    def stats(self) -> EngineStats:
        bm = self.scheduler.block_manager
        return EngineStats(self.scheduler.num_running, self.scheduler.num_waiting, bm.usage,
                           bm.prefix_cache_queries, bm.prefix_cache_hits, self.num_preemptions)
