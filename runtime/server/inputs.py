"""Turning request bodies into engine inputs: the model check, tokenization, prompt limits.

Everything a user can get wrong about a prompt is caught here, before the engine sees it, with
vLLM's messages (the context-length one is matched by clients that retry with a shorter prompt).
"""
from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from runtime.server.errors import ServerError, bad_request
from runtime.server.protocol import ChatMessage


@dataclass
class EnginePrompt:
    """One prompt as the engine takes it: the text (None for token-id prompts) and its ids."""

    text: str | None
    token_ids: list[int]


def check_model(requested: str | None, served_names: list[str]) -> None:
    """404 unless the request names one of the served models (or none, meaning the default)."""
    if requested is not None and requested not in served_names:
        raise ServerError(f"The model `{requested}` does not exist.", HTTPStatus.NOT_FOUND, "model")


def completion_prompts(prompt, tokenizer, add_special_tokens: bool) -> list[EnginePrompt]:
    """A completions `prompt` (text, ids, or a batch of either) as one EnginePrompt per prompt."""
    if isinstance(prompt, str):
        batch = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        batch = [prompt]
    else:
        batch = list(prompt)
    if not batch:
        raise bad_request("prompt must not be empty.", "prompt")
    out = []
    for item in batch:
        if isinstance(item, str):
            out.append(EnginePrompt(item, tokenizer.encode(item, add_special_tokens=add_special_tokens)))
        else:
            out.append(EnginePrompt(None, list(item)))
    for p in out:
        if not p.token_ids:
            raise bad_request("prompt must contain at least one token.", "prompt")
        check_token_ids(p.token_ids, tokenizer.vocab_size, "prompt")
    return out


def chat_prompt(messages: list[ChatMessage], tokenizer, chat_template: str | None,
                add_generation_prompt: bool, add_special_tokens: bool) -> EnginePrompt:
    """Render the messages with the chat template and tokenize the result."""
    try:
        dicts = [m.to_template_dict() for m in messages]
        text = tokenizer.apply_chat_template(dicts, add_generation_prompt=add_generation_prompt,
                                             chat_template=chat_template)
    except ValueError as exc:
        raise bad_request(str(exc), "messages") from None
    except Exception as exc:  # jinja2 errors raised by a template that rejects these messages
        raise bad_request(f"The chat template could not render these messages: {exc}",
                          "messages") from None
    token_ids = tokenizer.encode(text, add_special_tokens=add_special_tokens)
    if not token_ids:
        raise bad_request("The chat template rendered these messages to an empty prompt.", "messages")
    return EnginePrompt(text, token_ids)


def check_token_ids(token_ids: list[int], vocab_size: int, param: str) -> None:
    bad = [t for t in token_ids if not 0 <= t < vocab_size]
    if bad:
        raise bad_request(f"Token id {bad[0]} is out of vocabulary (token ids must be in "
                          f"[0, {vocab_size - 1}]).", param)


def resolve_max_tokens(requested: int | None, num_prompt_tokens: int, max_model_len: int,
                       param: str = "max_tokens", prompt_param: str = "prompt") -> int:
    """The request's max_tokens, or the rest of the context when it gave none.

    Raises vLLM's context-length error when the prompt plus max_tokens does not fit.
    """
    if requested is not None and requested < 1:
        raise bad_request(f"{param} must be at least 1, got {requested}.", param)
    if num_prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {num_prompt_tokens} input tokens. Please reduce the length of the "
            "input messages.", prompt_param)
    if requested is None:
        return max_model_len - num_prompt_tokens
    if num_prompt_tokens + requested > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {num_prompt_tokens + requested} tokens ({num_prompt_tokens} in the "
            f"messages, {requested} in the completion). Please reduce the length of the "
            "messages or completion.", param)
    return requested
