"""`review`: mechanical quality checks over the content a step depends on.

Checks (`config.checks`, default all four):
  grammar     lowercase sentence starts, doubled words ("the the"), repeated punctuation
              ("!!"), double spaces, unbalanced brackets or quotes, sentences over 40 words.
  compliance  fair-housing phrases that exclude a protected class ("adults only", ...).
  brand       `config.brand.forbidden` terms present, `config.brand.required` terms absent.
  seo         word count outside `config.seo.minWords`/`maxWords` (defaults by content
              type), `config.seo.keywords` missing, average sentence over 25 words.
Compliance and forbidden-brand findings are errors; everything else is a warning.

Scoring: per piece of content and per check, 1 - 0.5 per error - 0.1 per warning, floored
at 0; a check's score is the mean over the pieces; `qualityScore` is the mean over the checks
run, capped at 0.5 when there is any error, so that any threshold gate at 0.5 or above stops
content that must not ship however good the rest is. `passed` means no error.

Content: every `content` string in the outputs of the step's direct dependencies; if there
is none, in every upstream output; `config.content` (a string or list) replaces both.

Output: qualityScore, checks {check: score}, issues [{check, severity, message, excerpt,
step}], passed, reviewedSteps, errorCount, warningCount, wordCount.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from statistics import mean
from typing import Any, ClassVar

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.steps import _schema
from sluice.steps._config import get_str_list
from sluice.steps._text import Piece, pieces, sentences, strip_markers, word_count

CHECKS = ("grammar", "compliance", "brand", "seo")
ERROR_PENALTY = 0.5
WARNING_PENALTY = 0.1
ERROR_CAP = 0.5
MAX_SENTENCE_WORDS = 40
MAX_AVG_SENTENCE_WORDS = 25
# Per piece and kind of finding, so one sloppy habit cannot bury every other issue.
_MAX_REPEATS = 5
# (minWords, maxWords) by content type.
WORD_BOUNDS = {
    "social-post": (10, 300),
    "blog-post": (150, 2500),
    "email": (50, 800),
    "report": (80, 3000),
    "listing-description": (50, 600),
}
DEFAULT_WORD_BOUNDS = (20, 2000)

# Phrase -> the protected class (US Fair Housing Act) it excludes or singles out.
FAIR_HOUSING_PHRASES = {
    "adults only": "familial status",
    "adult only": "familial status",
    "no children": "familial status",
    "no kids": "familial status",
    "no families": "familial status",
    "singles only": "familial status",
    "perfect for singles": "familial status",
    "ideal for young professionals": "familial status",
    "bachelor pad": "familial status and sex",
    "exclusive neighborhood": "race, color or national origin (a coded term)",
    "no section 8": "source of income (covered by many state and local laws)",
    "section 8 not accepted": "source of income (covered by many state and local laws)",
    "christian home": "religion",
    "christian neighborhood": "religion",
    "able-bodied": "disability",
    "physically fit": "disability",
    "no wheelchairs": "disability",
    "no disabled": "disability",
    "no handicapped": "disability",
    "english speakers only": "national origin",
    "no immigrants": "national origin",
}


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Word boundaries that also work next to punctuation; "able-bodied" matches "able bodied".
    inner = r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", phrase.strip()))
    return re.compile(rf"(?<!\w){inner}(?!\w)", re.IGNORECASE)


_FAIR_HOUSING = [(p, basis, _phrase_pattern(p)) for p, basis in FAIR_HOUSING_PHRASES.items()]
_DOUBLED_WORD = re.compile(r"\b([A-Za-z]+)\s+\1\b", re.IGNORECASE)
_REPEATED_PUNCTUATION = re.compile(r"[!?]{2,}|,{2,}|;{2,}|(?<!\.)\.\.(?!\.)|\.{4,}")
_DOUBLE_SPACE = re.compile(r"(?<=\S) {2,}(?=\S)")
_PAIRS = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True, slots=True)
class Issue:
    check: str
    severity: str  # "error" | "warning"
    message: str
    excerpt: str
    step: str

    def to_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "excerpt": self.excerpt,
            "step": self.step,
        }


@dataclass(frozen=True, slots=True)
class _Settings:
    required: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    min_words: int | None = None
    max_words: int | None = None
    keywords: tuple[str, ...] = ()


def _excerpt(text: str, start: int, end: int, pad: int = 30) -> str:
    left, right = max(0, start - pad), min(len(text), end + pad)
    snippet = " ".join(text[left:right].split())
    return ("…" if left else "") + snippet + ("…" if right < len(text) else "")


def _grammar(piece: Piece, _: _Settings) -> Iterator[tuple[str, str, str]]:
    text = piece.text
    for sentence in sentences(text):
        first = sentence.lstrip("\"'\u201c\u2018(*_")
        if first[:1].isalpha() and first[:1].islower() and "://" not in first.split()[0]:
            yield "warning", "sentence starts with a lowercase letter", _excerpt(sentence, 0, 0)
        if (n := word_count(sentence)) > MAX_SENTENCE_WORDS:
            yield (
                "warning",
                f"sentence has {n} words (over {MAX_SENTENCE_WORDS}); consider splitting it",
                _excerpt(sentence, 0, 0),
            )
    for pattern, message in (
        (_DOUBLED_WORD, "doubled word"),
        (_REPEATED_PUNCTUATION, "repeated punctuation"),
        (_DOUBLE_SPACE, "double space"),
    ):
        for match in list(pattern.finditer(text))[:_MAX_REPEATS]:
            yield "warning", f"{message} {match.group(0)!r}", _excerpt(text, *match.span())
    yield from _balance(strip_markers(text))


def _balance(text: str) -> Iterator[tuple[str, str, str]]:
    stack: list[tuple[str, int]] = []
    for index, char in enumerate(text):
        if char in "([{":
            stack.append((char, index))
        elif char in _PAIRS:
            if stack and stack[-1][0] == _PAIRS[char]:
                stack.pop()
            else:
                yield "warning", f"unmatched {char!r}", _excerpt(text, index, index + 1)
    for char, index in stack[:_MAX_REPEATS]:
        yield "warning", f"unclosed {char!r}", _excerpt(text, index, index + 1)
    if text.count('"') % 2:
        yield "warning", 'unbalanced double quotes (")', _excerpt(text, text.rfind('"'), 0)
    if text.count("\u201c") != text.count("\u201d"):
        yield "warning", "unbalanced curly quotes", _excerpt(text, text.find("\u201c"), 0)


def _compliance(piece: Piece, _: _Settings) -> Iterator[tuple[str, str, str]]:
    for phrase, basis, pattern in _FAIR_HOUSING:
        for match in pattern.finditer(piece.text):
            yield (
                "error",
                f'fair-housing: "{phrase}" excludes or singles out people by {basis}',
                _excerpt(piece.text, *match.span()),
            )


def _brand(piece: Piece, settings: _Settings) -> Iterator[tuple[str, str, str]]:
    for term in settings.forbidden:
        for match in _phrase_pattern(term).finditer(piece.text):
            yield "error", f'forbidden brand term "{term}"', _excerpt(piece.text, *match.span())
    for term in settings.required:
        if not _phrase_pattern(term).search(piece.text):
            yield "warning", f'required brand term "{term}" is missing', ""


def _seo(piece: Piece, settings: _Settings) -> Iterator[tuple[str, str, str]]:
    low, high = WORD_BOUNDS.get(piece.content_type, DEFAULT_WORD_BOUNDS)
    low = settings.min_words if settings.min_words is not None else low
    high = settings.max_words if settings.max_words is not None else high
    words = word_count(piece.text)
    if words < low:
        yield "warning", f"too short for SEO: {words} words (minimum {low})", ""
    if words > high:
        yield "warning", f"too long for SEO: {words} words (maximum {high})", ""
    for keyword in settings.keywords:
        if not _phrase_pattern(keyword).search(piece.text):
            yield "warning", f'keyword "{keyword}" does not appear', ""
    found = sentences(piece.text)
    average = sum(word_count(s) for s in found) / len(found) if found else 0.0
    if average > MAX_AVG_SENTENCE_WORDS:
        yield (
            "warning",
            f"hard to read: sentences average {average:.1f} words "
            f"(aim for {MAX_AVG_SENTENCE_WORDS} or fewer)",
            "",
        )


_Checker = Callable[[Piece, _Settings], Iterator[tuple[str, str, str]]]
_CHECKERS: dict[str, _Checker] = {
    "grammar": _grammar,
    "compliance": _compliance,
    "brand": _brand,
    "seo": _seo,
}


CONFIG_SCHEMA = _schema.obj(
    {
        "checks": _schema.names(CHECKS, "the checks to run", default=list(CHECKS)),
        "brand": _schema.obj(
            {
                "required": _schema.strings("terms the content must contain"),
                "forbidden": _schema.strings("terms the content must not contain"),
            },
            description="the brand check's terms",
        ),
        "seo": _schema.obj(
            {
                "minWords": _schema.whole_number("the fewest words (default by content type)"),
                "maxWords": _schema.whole_number("the most words (default by content type)"),
                "keywords": _schema.strings("words or phrases the content must contain"),
            },
            description="the seo check's settings",
        ),
        "content": {
            "type": ["string", "array"],
            "items": _schema.STRING,
            "description": "the text(s) to review instead of the upstream steps' content",
        },
    }
)


@dataclass(frozen=True, slots=True)
class ReviewStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        seo = config.get("seo")
        if isinstance(seo, Mapping):
            low, high = seo.get("minWords"), seo.get("maxWords")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                yield "seo.maxWords", f"must not be less than seo.minWords ({low:g})"

    async def run(self, ctx: StepContext) -> StepResult:
        checks = _checks(ctx)
        settings = _settings(ctx)
        content = _content(ctx)
        issues: list[Issue] = []
        scores: dict[str, list[float]] = {check: [] for check in checks}
        for piece in content:
            for check in checks:
                found = [
                    Issue(check, severity, message, excerpt, piece.step_id)
                    for severity, message, excerpt in _CHECKERS[check](piece, settings)
                ]
                errors = sum(1 for i in found if i.severity == "error")
                penalty = ERROR_PENALTY * errors + WARNING_PENALTY * (len(found) - errors)
                scores[check].append(max(0.0, 1.0 - penalty))
                issues.extend(found)
        per_check = {check: round(mean(values), 4) for check, values in scores.items()}
        errors = sum(1 for i in issues if i.severity == "error")
        quality = mean(per_check.values())
        if errors:
            quality = min(quality, ERROR_CAP)
        return StepResult(
            output={
                "qualityScore": round(quality, 4),
                "checks": per_check,
                "issues": [i.to_json() for i in issues],
                "passed": errors == 0,
                "reviewedSteps": sorted({p.step_id for p in content}),
                "errorCount": errors,
                "warningCount": len(issues) - errors,
                "wordCount": sum(word_count(p.text) for p in content),
            }
        )


def _checks(ctx: StepContext) -> tuple[str, ...]:
    return tuple(dict.fromkeys(get_str_list(ctx.config, "checks", CHECKS)))


def _settings(ctx: StepContext) -> _Settings:
    brand = ctx.config.get("brand", {})
    seo = ctx.config.get("seo", {})
    min_words, max_words = seo.get("minWords"), seo.get("maxWords")
    return _Settings(
        required=tuple(get_str_list(brand, "required", ())),
        forbidden=tuple(get_str_list(brand, "forbidden", ())),
        min_words=int(min_words) if min_words is not None else None,
        max_words=int(max_words) if max_words is not None else None,
        keywords=tuple(get_str_list(seo, "keywords", ())),
    )


def _content(ctx: StepContext) -> list[Piece]:
    given = ctx.config.get("content")
    if given is not None:
        texts = [given] if isinstance(given, str) else given
        found = [Piece(ctx.step_id, t) for t in texts if t.strip()]
    else:
        found = pieces(ctx.inputs) or pieces(ctx.upstream)
    if not found:
        raise PermanentStepError(
            "review found no content: depend on a step whose output has a `content` string "
            "(such as generate), or set config.content"
        )
    return found
