"""Validation-gate expressions in CEL (https://cel.dev): safe, side-effect free, always terminating.

CEL cannot reach Python, the file system or the network, and has no unbounded loops: its
macros iterate over the (bounded) data only. We never fall back to Python's eval.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

VARIABLES = frozenset({"output", "steps", "params"})
# A step's `when` condition is judged before the step runs: it has no output of its own.
CONDITION_VARIABLES = frozenset({"steps", "params"})
MAX_LENGTH = 2000
# Macros iterate over the data; nested ones multiply (n^2, n^3, ...). One level and a handful
# of macros keep an evaluation linear in the size of the run's data, which is itself bounded.
MAX_MACROS = 8
MAX_MACRO_NESTING = 1

_STANDARD_FUNCTIONS = frozenset(
    {
        "size", "int", "uint", "double", "string", "bool", "bytes", "type", "dyn", "has",
        "all", "exists", "exists_one", "map", "filter", "contains", "startsWith", "endsWith",
        "matches", "duration", "timestamp", "max", "min", "getFullYear", "getMonth",
        "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes",
        "getSeconds", "getMilliseconds",
    }
)  # fmt: skip


_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionError(ValueError):
    """The expression does not compile, or failed to evaluate to a bool."""


def problems(source: str, variables: frozenset[str] = VARIABLES) -> list[str]:
    """Every reason `source` cannot be used as a gate condition (empty when it can), or with
    `variables`, as another condition over those."""
    if not source.strip():
        return ["is empty; write a CEL expression returning a bool, e.g. `output.score > 0.5`"]
    if len(source) > MAX_LENGTH:
        return [f"is {len(source)} characters long; the limit is {MAX_LENGTH}"]
    try:
        program = _compile(source)
    except ExpressionError as exc:
        return [str(exc)]
    found: list[str] = []
    refs = program.references()
    # Macro iteration variables (`i` in `xs.filter(i, ...)`) are reported as variables too.
    bound = set(_MACRO_VARIABLE.findall(source))
    unknown_vars = sorted(set(refs.get("variables", ())) - variables - bound)
    if unknown_vars:
        found.append(
            f"uses unknown variable(s) {', '.join(unknown_vars)}; "
            f"available: {', '.join(sorted(variables))}"
        )
    unknown_functions = sorted(
        f for f in refs.get("functions", ()) if f[0] not in "_!@-" and f not in _STANDARD_FUNCTIONS
    )
    if unknown_functions:
        found.append(f"calls unknown function(s) {', '.join(unknown_functions)}")
    count, depth = _macro_shape(source)
    if count > MAX_MACROS:
        found.append(
            f"uses {count} macros (all, exists, map, filter, ...); the limit is {MAX_MACROS}"
        )
    if depth > MAX_MACRO_NESTING:
        found.append(
            "nests a macro inside another (e.g. `xs.exists(x, ys.exists(...))`): its cost would "
            "grow with the square of the data; compute the inner part in a step instead"
        )
    return found


_MACRO_CALL = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*$")


def _macro_shape(source: str) -> tuple[int, int]:
    """(number of macro calls, deepest nesting of macro calls), skipping string literals."""
    count = depth = deepest = 0
    stack: list[bool] = []
    i, quote = 0, ""
    while i < len(source):
        char = source[i]
        if quote:
            if char == "\\":
                i += 1
            elif source.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif char in "\"'":
            quote = source[i : i + 3] if source[i : i + 3] in ('"""', "'''") else char
            i += len(quote) - 1
        elif char == "(":
            is_macro = bool(_MACRO_CALL.search(source, 0, i))
            stack.append(is_macro)
            if is_macro:
                count += 1
                depth += 1
                deepest = max(deepest, depth)
        elif char == ")" and stack:
            depth -= stack.pop()
        i += 1
    return count, deepest


# CEL's tokens, as far as following field selections needs: string literals (so that nothing in
# one is taken for a field), numbers, names and single characters.
_TOKEN = re.compile(
    r"(?P<string>[rRbB]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''"
    r"|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'))"
    r"|(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_PLAIN_STRING = re.compile(r"^(?:\"[^\"\\\n]*\"|'[^'\\\n]*')$")

Path = tuple[str | int, ...]


def data_paths(source: str) -> list[Path]:
    """The data an expression reads: each chain of field selections and constant indexes from
    `output`, `steps` or `params` (`output.issues` in `output.issues.size() > 0`,
    `steps["review-content"].qualityScore`), outside string literals, in order of appearance,
    leaving out those that begin a longer one."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(source) if m.lastgroup != "space"]
    texts = [text for _, text in tokens] + ["", "", ""]  # look-ahead past the end reads ""
    found: list[Path] = []
    for i, (kind, text) in enumerate(tokens):
        selected = i > 0 and texts[i - 1] == "."
        if kind != "name" or text not in VARIABLES or selected or texts[i + 1] == "(":
            continue
        path: list[str | int] = [text]
        j = i + 1
        while j < len(tokens):
            if texts[j] == "." and tokens[j + 1 : j + 2] and tokens[j + 1][0] == "name":
                if texts[j + 2] == "(":
                    break  # a method call (`.size()`), not a field
                path.append(texts[j + 1])
                j += 2
            elif texts[j] == "[" and texts[j + 2] == "]":
                kind, key = tokens[j + 1]
                if kind == "string" and _PLAIN_STRING.match(key):
                    path.append(key[1:-1])
                elif kind == "number" and key.isdigit():
                    path.append(int(key))
                else:
                    break
                j += 3
            else:
                break
        found.append(tuple(path))
    unique = list(dict.fromkeys(found))
    return [p for p in unique if not any(len(q) > len(p) and q[: len(p)] == p for q in unique)]


def evaluate_bool(source: str, variables: Mapping[str, Any]) -> bool:
    """Evaluate a validated expression; a missing field or a non-bool result is an error."""
    try:
        result = _compile(source).execute(dict(variables))
    except ExpressionError:
        raise
    except KeyError as exc:  # the library's bare KeyError for a missing map key
        raise ExpressionError(f"no field {exc.args[0]!r} in the data") from None
    except Exception as exc:  # the library raises RuntimeError/ValueError/ZeroDivisionError
        raise ExpressionError(str(exc)) from None
    if not isinstance(result, bool):
        raise ExpressionError(f"returned {type(result).__name__} {result!r}, not a bool")
    return result


@lru_cache(maxsize=512)
def _compile(source: str) -> Any:
    try:
        return cel.compile(source)
    except Exception as exc:
        message = str(exc).replace("Failed to parse expression", "does not parse:")
        raise ExpressionError(message) from None
