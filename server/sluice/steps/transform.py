"""`transform`: format, filter or aggregate JSON data.

`config.inputData` is any JSON value, usually a whole-string substitution of an upstream
output ("{{ steps.fetch.items }}"), which arrives with its type intact; JSON text (from a
substitution inside a longer string) is parsed first.

  format     `config.format` json (default) | csv | markdown | text -> `result` is a string.
  filter     `config.where` {field: value} keeps objects whose fields equal the values;
             `config.fields` [field, ...] keeps only those fields. Fields may be dotted paths.
  aggregate  `config.aggregations` {name: {op, field}} with op count | sum | avg | min | max,
             over all items or per `config.groupBy` value (groups in first-seen order).

Output: transformation, result, count (format: items formatted; filter: items kept;
aggregate: groups, 1 without groupBy).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.steps import _schema
from sluice.steps._config import get_str, get_str_list, number

TRANSFORMATIONS = ("format", "filter", "aggregate")
FORMATS = ("json", "csv", "markdown", "text")
OPS = ("count", "sum", "avg", "min", "max")
_MISSING = object()

_AGGREGATION = _schema.obj(
    {
        "op": _schema.choice(OPS, "the measure"),
        "field": _schema.string("the (dotted) field measured; count without it counts items"),
    },
    required=["op"],
    **_schema.when("op", [op for op in OPS if op != "count"], {"required": ["field"]}),
)

CONFIG_SCHEMA = _schema.obj(
    {
        "transformation": _schema.choice(TRANSFORMATIONS, "what to do with inputData"),
        "inputData": {
            "description": "the data: any JSON value, usually '{{ steps.STEP_ID.PATH }}'; JSON "
            "text is parsed"
        },
        "format": _schema.choice(FORMATS, "format: the output format", default="json"),
        "where": {
            "type": "object",
            "description": "filter: {field: value} that kept items have (fields may be dotted)",
        },
        "fields": _schema.strings("filter: the fields kept of each item (may be dotted)"),
        "aggregations": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": _AGGREGATION,
            "description": 'aggregate: the measures by name, e.g. {"total": {"op": "sum", '
            '"field": "price"}}',
        },
        "groupBy": _schema.string("aggregate: the (dotted) field to group items by"),
    },
    required=["transformation", "inputData"],
    allOf=[
        _schema.when(
            "transformation",
            "filter",
            {"anyOf": [{"required": ["where"]}, {"required": ["fields"]}]},
        ),
        _schema.when("transformation", "aggregate", {"required": ["aggregations"]}),
    ],
)


@dataclass(frozen=True, slots=True)
class TransformStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    async def run(self, ctx: StepContext) -> StepResult:
        kind = str(ctx.config["transformation"])
        data = ctx.config["inputData"]
        if isinstance(data, str) and data.strip()[:1] in ("[", "{"):
            try:
                data = json.loads(data)
            except ValueError:
                raise PermanentStepError("config.inputData is not valid JSON") from None
        result, count = _KINDS[kind](data, ctx.config)
        return StepResult(output={"transformation": kind, "result": result, "count": count})


def _format(data: Any, config: Mapping[str, Any]) -> tuple[Any, int]:
    fmt = config.get("format", "json")
    count = len(data) if isinstance(data, list) else 1
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False), count
    rows = data if isinstance(data, list) else [data]
    if fmt == "csv":
        return _csv(rows), count
    if fmt == "markdown":
        return _markdown(data), count
    return "\n".join(_line(row) for row in rows), count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def _columns(rows: list[Any]) -> list[str]:
    return list(dict.fromkeys(k for row in rows if isinstance(row, Mapping) for k in row))


def _csv(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = _columns(rows)
    if not columns:
        writer.writerow(["value"])
        writer.writerows([_cell(row)] for row in rows)
        return out.getvalue()
    writer.writerow(columns)
    for row in rows:
        row = row if isinstance(row, Mapping) else {}
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _markdown(data: Any) -> str:
    def esc(value: Any) -> str:
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    if isinstance(data, Mapping):
        data = [{"key": k, "value": v} for k, v in data.items()]
    if not isinstance(data, list):
        return _cell(data)
    columns = _columns(data)
    if not columns:
        return "\n".join(f"- {esc(item)}" for item in data)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in data:
        row = row if isinstance(row, Mapping) else {}
        lines.append("| " + " | ".join(esc(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _line(row: Any) -> str:
    if isinstance(row, Mapping):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in row.items())
    return _cell(row)


def _get(item: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(item, Mapping) or key not in item:
            return _MISSING
        item = item[key]
    return item


def _items(data: Any, kind: str) -> list[Any]:
    if not isinstance(data, list):
        raise PermanentStepError(f"config.inputData must be a list of objects to {kind}")
    return data


def _filter(data: Any, config: Mapping[str, Any]) -> tuple[Any, int]:
    items = _items(data, "filter")
    where: Mapping[str, Any] = config.get("where", {})
    fields = get_str_list(config, "fields", ())
    kept = [
        item
        for item in items
        if isinstance(item, Mapping) and all(_get(item, k) == v for k, v in where.items())
    ]
    if fields:
        kept = [{f: v for f in fields if (v := _get(item, f)) is not _MISSING} for item in kept]
    return kept, len(kept)


def _aggregate(data: Any, config: Mapping[str, Any]) -> tuple[Any, int]:
    items = _items(data, "aggregate")
    specs: Mapping[str, Mapping[str, Any]] = config["aggregations"]
    measures = {name: _measure(name, spec) for name, spec in specs.items()}
    group_by = get_str(config, "groupBy", "")
    if not group_by:
        return {name: fn(items) for name, fn in measures.items()}, 1
    groups: dict[str, tuple[Any, list[Any]]] = {}
    for item in items:
        key = _get(item, group_by)
        key = None if key is _MISSING else key
        groups.setdefault(json.dumps(key, sort_keys=True), (key, []))[1].append(item)
    result = [
        {group_by: key, **{name: fn(members) for name, fn in measures.items()}}
        for key, members in groups.values()
    ]
    return result, len(result)


def _measure(name: str, spec: Mapping[str, Any]) -> Callable[[list[Any]], Any]:
    where = f"config.aggregations.{name}"
    op, field = spec["op"], get_str(spec, "field", "")
    if op == "count":
        return lambda items: (
            len(items) if not field else sum(1 for i in items if _get(i, field) is not _MISSING)
        )

    def apply(items: list[Any]) -> Any:
        found = [
            number(value, f"{where}: {field!r} of item {index}")
            for index, item in enumerate(items)
            if (value := _get(item, field)) is not _MISSING and value is not None
        ]
        if op == "sum":
            return _plain(math.fsum(found))
        if not found:
            return None  # avg, min and max of nothing have no value
        if op == "avg":
            return math.fsum(found) / len(found)
        return _plain(min(found) if op == "min" else max(found))

    return apply


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() else value


_KINDS: dict[str, Callable[[Any, Mapping[str, Any]], tuple[Any, int]]] = {
    "format": _format,
    "filter": _filter,
    "aggregate": _aggregate,
}
