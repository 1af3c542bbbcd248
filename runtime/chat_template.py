"""Chat templates: pick a checkpoint's Jinja template and render messages exactly as transformers does.

The environment copies transformers' (utils/chat_template_utils.py): a sandbox with trim_blocks and
lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII and
takes indent, the `{% generation %}` tag, and the same clean-up of messages before rendering (None
values dropped, reasoning fields aliased, everything reduced to plain JSON types).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

NO_TEMPLATE_HINT = ("This model has no chat template; pass one with --chat-template (gaudi-run serve) "
                    "or chat_template= (Python), or send a plain completion prompt instead.")
# Names a message's reasoning may come under; templates read "reasoning_content" (gpt-oss reads "thinking").
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


@dataclasses.dataclass(frozen=True)
class ChatTemplates:
    """A checkpoint's chat templates by name ("default", "tool_use", ...); empty when it has none."""

    templates: Mapping[str, str]

    @classmethod
    def from_dir(cls, path: Path, tokenizer_config: Mapping[str, Any]) -> ChatTemplates:
        """chat_template.jinja and chat_templates/*.jinja win over tokenizer_config.json's chat_template."""
        files = {"default": path / "chat_template.jinja"} if (path / "chat_template.jinja").is_file() else {}
        if (path / "chat_templates").is_dir():
            files.update({f.name.removesuffix(".jinja"): f for f in sorted((path / "chat_templates").glob("*.jinja"))})
        if files:
            return cls({name: f.read_text(encoding="utf-8") for name, f in files.items()})
        value = tokenizer_config.get("chat_template")
        if isinstance(value, str):
            return cls({"default": value})
        if isinstance(value, list):  # [{"name": ..., "template": ...}, ...]
            return cls({item["name"]: item["template"] for item in value})
        return cls({})

    def select(self, chat_template: str | None = None, tools: Sequence | None = None) -> str:
        """The template text to use: `chat_template` (a name or Jinja text), else the default one."""
        is_single = len(self.templates) == 1 and "default" in self.templates
        if chat_template is not None:  # a template name only counts where the model has several
            return chat_template if is_single else self.templates.get(chat_template, chat_template)
        if not self.templates:
            raise ValueError(NO_TEMPLATE_HINT)
        if is_single:
            return self.templates["default"]
        if tools is not None and "tool_use" in self.templates:
            return self.templates["tool_use"]
        if "default" in self.templates:
            return self.templates["default"]
        raise ValueError(f"This model has several chat templates and none is the default; pass one of "
                         f"{sorted(self.templates)} as chat_template=.")

    @staticmethod
    def render(template: str, messages: Any, *, tools: Sequence | None = None, add_generation_prompt: bool = True,
               variables: Mapping[str, Any] | None = None) -> str:
        """Render `messages` with `template`; `variables` (special tokens, template kwargs) are visible to it."""
        chat = _checked_messages(messages)
        if tools is not None:
            if not isinstance(tools, (list, tuple)) or not all(isinstance(t, Mapping) for t in tools):
                raise ValueError("tools must be a list of JSON-schema dicts ({'type': 'function', 'function': {...}}).")
            tools = _plain(list(tools))
        try:
            compiled = _compile(template)
            return compiled.render(messages=chat, tools=tools, documents=None,
                                   add_generation_prompt=add_generation_prompt, **_plain(dict(variables or {})))
        except jinja2.TemplateError as e:
            raise ValueError(f"The chat template could not render these messages: {e}") from None


def _checked_messages(messages: Any) -> list[dict]:
    """Validate the chat and reduce it to what transformers hands the template."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts.")
    chat = []
    for i, message in enumerate(messages):
        if callable(getattr(message, "model_dump", None)):  # pydantic request models
            message = message.model_dump()
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) or not (
                "content" in message or message.get("tool_calls")):
            raise ValueError(f"messages[{i}] must be a dict with a string 'role' and a 'content', "
                             f"got {message!r:.200}.")
        message = _plain({key: value for key, value in message.items() if value is not None})
        reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        chat.append(message)
    return chat


def _plain(value: Any) -> Any:
    """Rebuild `value` from plain JSON types so the sandboxed template sees no foreign objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    for base in (bool, str, int, float):  # subclasses (enums, numpy scalars) back to the base type
        if isinstance(value, base):
            return base(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters and sorts keys; transformers' does neither.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _TemplateDict:
    """`dict(...)` for templates without exposing the dict type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """Jinja's namespace, refusing underscore names (a route to interpreter internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"Chat templates cannot set underscore attributes, got {name!r}.")


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; render the body as is."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


@functools.lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_TemplateDict(),
                       namespace=_TemplateNamespace)
    return env.from_string(template)
