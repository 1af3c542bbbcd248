"""Request: one generation request's state between arrival and its last output.

Owns its n sequences' text (incremental detokenization), logprobs, stop checking and the vLLM
RequestOutput it reports. Tensor-free; the engine feeds it sampled token ids.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from runtime.detokenizer import IncrementalDetokenizer
from runtime.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from runtime.sampling_params import SamplingParams
from runtime.sequence import Sequence


@dataclass
class SequenceText:
    """What one output sequence has produced so far, as the user sees it."""
    detokenizer: IncrementalDetokenizer | None
    text: str = ""
    logprobs: list[dict[int, Logprob]] | None = None
    cumulative_logprob: float | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class Request:
    req_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    seqs: list[Sequence]
    eos_token_ids: tuple[int, ...]
    max_model_len: int
    texts: list[SequenceText] = field(default_factory=list)
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    metrics: RequestMetrics = field(default_factory=lambda: RequestMetrics(arrival_time=time.time()))

    @property
    def finished(self) -> bool:
        return all(t.finish_reason is not None for t in self.texts)

    def on_token(self, seq: Sequence, token_id: int, logprobs: dict[int, Logprob] | None,
                 decode_one) -> bool:
        """Account for a token `seq` just got; returns True when the sequence must stop."""
        now = time.time()
        if self.metrics.first_token_time is None:
            self.metrics.first_token_time = now
        self.metrics.last_token_time = now
        out = self.texts[seq.index]
        if logprobs is not None:
            for tid, lp in logprobs.items():
                lp.decoded_token = decode_one(tid)
            out.logprobs.append(logprobs)
            out.cumulative_logprob += logprobs[token_id].logprob
        if out.detokenizer is not None:
            out.text += out.detokenizer.add_token(token_id)
        stopped = self._check_stop(seq, out, token_id)
        if stopped and out.detokenizer is not None and not isinstance(out.stop_reason, str):
            out.text += out.detokenizer.flush()   # release a trailing incomplete character
        return stopped

    def _check_stop(self, seq: Sequence, out: SequenceText, token_id: int) -> bool:
        p = self.params
        num_out = seq.num_output_tokens
        if num_out >= p.min_tokens:
            if not p.ignore_eos and token_id in self.eos_token_ids:
                return self._stop(out, "stop", None)
            if p.stop_token_ids and token_id in p.stop_token_ids:
                return self._stop(out, "stop", token_id)
            if p.stop and self._find_stop_string(out):
                return True
        if (p.max_tokens is not None and num_out >= p.max_tokens) or seq.num_tokens >= self.max_model_len:
            return self._stop(out, "length", None)
        return False

    def _find_stop_string(self, out: SequenceText) -> bool:
        # only the newly added text (plus the longest stop's overlap) can hold a new match,
        # so a stop string split across tokens is still found
        window = max(len(s) for s in self.params.stop) + 32
        start = max(0, len(out.text) - window)
        hits = [(out.text.find(s, start), s) for s in self.params.stop]
        hits = [(i, s) for i, s in hits if i >= 0]
        if not hits:
            return False
        pos, stop = min(hits)
        out.text = out.text[: pos + len(stop)] if self.params.include_stop_str_in_output else out.text[:pos]
        return self._stop(out, "stop", stop)

    @staticmethod
    def _stop(out: SequenceText, finish_reason: str, stop_reason: int | str | None) -> bool:
        out.finish_reason, out.stop_reason = finish_reason, stop_reason
        return True

    def abort(self) -> None:
        for out in self.texts:
            if out.finish_reason is None:
                out.finish_reason = "abort"

    def output(self) -> RequestOutput:
        """The request's cumulative RequestOutput, vLLM style."""
        finished = self.finished
        if finished and self.metrics.finished_time is None:
            self.metrics.finished_time = time.time()
        holdback = 0
        if self.params.stop and not self.params.include_stop_str_in_output:
            holdback = max(len(s) for s in self.params.stop) - 1  # text that may still turn into a stop string
        outputs = []
        for seq, out in zip(self.seqs, self.texts):
            text = out.text
            if holdback and out.finish_reason is None:
                text = text[: max(0, len(text) - holdback)]
            outputs.append(CompletionOutput(
                index=seq.index, text=text, token_ids=list(seq.output_token_ids),
                cumulative_logprob=out.cumulative_logprob,
                # copies: the engine thread keeps appending while a server thread reads the output
                logprobs=list(out.logprobs) if out.logprobs is not None else None,
                finish_reason=out.finish_reason, stop_reason=out.stop_reason,
            ))
        return RequestOutput(request_id=self.req_id, prompt=self.prompt, prompt_token_ids=self.prompt_token_ids,
                             prompt_logprobs=list(self.prompt_logprobs) if self.prompt_logprobs is not None else None,
                             outputs=outputs, finished=finished,
                             metrics=self.metrics)
