"""Turning command-line text into request values: params, template references, statuses."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from sluice.cli.outcome import InputError
from sluice.client import Template, WorkflowStatus


def parse_params(pairs: Iterable[str], params_file: Path | None = None) -> dict[str, Any]:
    """The params of a run: the file's object first, then each `k=v` over it.

    A value is JSON when it parses as JSON (`price=500000` is a number, `tags=["a"]` a list),
    otherwise the text itself, so plain words need no quoting.
    """
    params: dict[str, Any] = {}
    if params_file is not None:
        loaded = _load_json(params_file, "--params-file")
        if not isinstance(loaded, dict):
            raise InputError(f"--params-file {params_file}: expected a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {pair!r}: expected NAME=VALUE")
        params[key.strip()] = _value(text)
    return params


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def template_file(reference: str) -> Template | None:
    """The template in a JSON file when `reference` names one; None when it is a template id."""
    path = Path(reference)
    if not (path.suffix == ".json" or path.is_file()):
        return None
    data = _load_json(path, "template file")
    if not isinstance(data, dict):
        raise InputError(f"template file {path}: expected a JSON object")
    try:
        return json_format.ParseDict(data, Template())
    except json_format.ParseError as error:
        raise InputError(f"template file {path}: {error}") from None


def parse_statuses(names: Iterable[str]) -> list[WorkflowStatus.ValueType]:
    """`completed`, `COMPLETED` or `WORKFLOW_STATUS_COMPLETED`."""
    statuses: list[WorkflowStatus.ValueType] = []
    for name in names:
        full = name.strip().upper()
        if not full.startswith("WORKFLOW_STATUS_"):
            full = f"WORKFLOW_STATUS_{full}"
        try:
            value = WorkflowStatus.Value(full)
        except ValueError:
            value = WorkflowStatus.WORKFLOW_STATUS_UNSPECIFIED
        if value == WorkflowStatus.WORKFLOW_STATUS_UNSPECIFIED:
            raise InputError(f"--status {name!r}: expected one of {', '.join(status_names())}")
        statuses.append(value)
    return statuses


def status_names() -> list[str]:
    return [
        name.removeprefix("WORKFLOW_STATUS_")
        for name, value in WorkflowStatus.items()
        if value != WorkflowStatus.WORKFLOW_STATUS_UNSPECIFIED
    ]


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror}") from None
    except ValueError as error:
        raise InputError(f"{what} {path} is not valid JSON: {error}") from None
