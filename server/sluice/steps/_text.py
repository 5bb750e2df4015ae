"""Words, sentences and the pieces of content that steps hand to each other."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# "500,000", "3.5", "don't" and "2-bedroom" are one word each; "$", "%" and "#" are not words.
_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019.,-][A-Za-z0-9]+)*")
# Markdown headings, bullets, numbered items and quotes: structure, not part of the sentence.
_LINE_MARKER = re.compile(r"^\s*(?:#{1,6}\s+|[-*•]\s+|\d+[.)]\s+|>\s*)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A full stop after these does not end a sentence (so "e.g. the" is not a lowercase start).
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "ave.", "rd."}
    | {"blvd.", "approx.", "no.", "inc.", "ltd.", "jr.", "sr."}
)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def sentences(text: str) -> list[str]:
    """Sentences, line by line: a heading or bullet without a full stop is a sentence too."""
    out: list[str] = []
    for raw in text.splitlines():
        line = _LINE_MARKER.sub("", raw).strip()
        if not line:
            continue
        merged: list[str] = []
        for part in _SENTENCE_END.split(line):
            if merged and merged[-1].split()[-1].lower() in _ABBREVIATIONS:
                merged[-1] = f"{merged[-1]} {part}"
            else:
                merged.append(part)
        out.extend(merged)
    return out


def strip_markers(text: str) -> str:
    """The text without line markers, so "1) item" does not read as an unbalanced bracket."""
    return "\n".join(_LINE_MARKER.sub("", line) for line in text.splitlines())


def preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class Piece:
    """A piece of content some step produced: a generate output, or any output with `content`."""

    step_id: str
    text: str
    content_type: str = ""
    title: str = ""
    platform: str = ""
    hashtags: tuple[str, ...] = ()


def outputs_with(outputs: Mapping[str, Any], key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(step id, output) for every output carrying `key`, by step id.

    Sorted so that a step re-run after a restart sees its upstream in the same order, however
    the engine happened to load it.
    """
    for step_id in sorted(outputs):
        output = outputs[step_id]
        if isinstance(output, Mapping) and output.get(key) is not None:
            yield step_id, output


def pieces(outputs: Mapping[str, Any]) -> list[Piece]:
    found: list[Piece] = []
    for step_id, output in outputs_with(outputs, "content"):
        content = output["content"]
        if not isinstance(content, str) or not content.strip():
            continue
        tags = output.get("hashtags")
        found.append(
            Piece(
                step_id=step_id,
                text=content,
                content_type=_str(output.get("contentType")),
                title=_str(output.get("title")),
                platform=_str(output.get("platform")),
                hashtags=tuple(t for t in tags if isinstance(t, str))
                if isinstance(tags, list)
                else (),
            )
        )
    return found


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
