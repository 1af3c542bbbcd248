"""The built-in default model's training text: Python's own help topics, shipped with every CPython.

`pydoc_data.topics.topics` maps a help keyword ("for", "lambda", ...) to the reference text
that `help("for")` prints, about 0.5 MB in all. Nothing is downloaded. The tokenizer is trained
on all of it. The model learns from each topic's opening as plain text, and from short chats
built out of it (a question naming the topic's title, answered by the topic's first
paragraphs), so that chat prompts about a topic get its documentation back.
Everything here is deterministic: topics in sorted key order, fixed question phrasings.
"""
from __future__ import annotations

import hashlib

# Questions a chat example asks about a topic; {title} is the topic's heading.
QUESTIONS = ("Tell me about {title}.", "What is {title}?", "Explain {title} in Python.")
_MIN_ANSWER_CHARS = 200   # an answer takes opening paragraphs until it is at least this long
_MAX_ANSWER_PARAGRAPHS = 3
# A topic's plain-text training document is its opening, cut at a paragraph end after this many characters:
# a model of a few M parameters trained for minutes reproduces a small text far better than it sketches a big one.
OPENING_CHARS = 1500


def topics() -> dict[str, str]:
    """Help keyword -> help text, in sorted keyword order."""
    from pydoc_data.topics import topics as raw
    return {key: raw[key].strip() + "\n" for key in sorted(raw)}


def corpus_sha256() -> str:
    """Fingerprint of the tokenizer text and the training text (they change with the Python version)."""
    digest = hashlib.sha256()
    for key, text in topics().items():
        digest.update(f"{key}\0{text}\0".encode("utf-8"))
    for document in training_documents():
        digest.update(f"{document}\0".encode("utf-8"))
    for conversation in chat_examples():
        for message in conversation:
            digest.update(f"{message['role']}\0{message['content']}\0".encode("utf-8"))
    return digest.hexdigest()


def opening(text: str, min_chars: int) -> str:
    """The leading paragraphs of `text` up to the first paragraph end at or after `min_chars` characters."""
    end = text.find("\n\n", min_chars)
    return text if end < 0 else text[:end] + "\n"


def training_documents() -> list[str]:
    """The plain-text training documents: each topic's opening, in sorted topic order."""
    return [opening(text, OPENING_CHARS) for text in topics().values()]


def _title_and_paragraphs(text: str) -> tuple[str, list[str]]:
    # A topic starts with its title underlined by asterisks, then blank-line separated paragraphs.
    head, *paragraphs = text.split("\n\n")
    return head.splitlines()[0].strip(), [p for p in paragraphs if p.strip()]


def _in_sentence(title: str) -> str:
    # 'The "for" statement' -> 'the "for" statement', but 'Python' or 'ABC' stay as they are
    first = title.split()[0]
    return title[0].lower() + title[1:] if first[1:].islower() and first not in ("Python",) else title


def chat_examples() -> list[list[dict[str, str]]]:
    """Short conversations about each topic: a user question and the topic's opening as the reply."""
    conversations = []
    for text in topics().values():
        title, paragraphs = _title_and_paragraphs(text)
        answer: list[str] = []
        for paragraph in paragraphs[:_MAX_ANSWER_PARAGRAPHS]:
            answer.append(paragraph.strip())
            if sum(len(p) for p in answer) >= _MIN_ANSWER_CHARS:
                break
        if not answer:
            continue
        for question in QUESTIONS:
            conversations.append([{"role": "user", "content": question.format(title=_in_sentence(title))},
                                  {"role": "assistant", "content": "\n\n".join(answer)}])
    return conversations
