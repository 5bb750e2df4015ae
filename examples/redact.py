"""A Sluice plugin: the step type `redact` masks terms in the content of the steps it depends on.

Start a server with it:  PYTHONPATH=examples .venv/bin/sluice serve --plugin redact:register
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sluice.engine.handlers import (
    HandlerRegistry,
    PermanentStepError,
    StepContext,
    StepResult,
    has_reference,
)

MASK = "[redacted]"


class RedactStep:
    # Checked when a template is validated, and on the resolved config before each attempt.
    config_schema = {
        "type": "object",
        "properties": {
            "terms": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "mask": {"type": "string", "default": MASK},
        },
        "required": ["terms"],
        "additionalProperties": False,
    }

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        # What the schema cannot say: a mask that contains a term would give it away. At
        # validation a value may still be a "{{ ... }}" substitution: leave those alone.
        mask, terms = config.get("mask", MASK), config.get("terms")
        if not isinstance(mask, str) or has_reference(mask) or not isinstance(terms, list):
            return
        for index, term in enumerate(terms):
            if isinstance(term, str) and not has_reference(term) and term.lower() in mask.lower():
                yield f"terms[{index}]", f"appears in the mask {mask!r}"

    async def run(self, ctx: StepContext) -> StepResult:
        texts = [
            out["content"] for out in ctx.inputs.values() if isinstance(out.get("content"), str)
        ]
        if not texts:
            # Another attempt would not help: fail the step at once.
            raise PermanentStepError("redact needs a dependency whose output has `content` text")
        # Literal terms, escaped: matching takes time linear in the text, whatever the terms.
        pattern = re.compile("|".join(re.escape(t) for t in ctx.config["terms"]), re.IGNORECASE)
        content, count = pattern.subn(ctx.config.get("mask", MASK), "\n\n".join(texts))
        return StepResult(output={"content": content, "redactions": count})


def register(registry: HandlerRegistry) -> None:
    registry.register("redact", RedactStep())
