"""Template and parameter validation: every problem at once, each with its field path.

Paths use the proto field names (`steps[2].dependencies[0]`) so a client can point at the
offending input whatever language it is written in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from sluice.engine import expressions, substitution, validators
from sluice.engine.config_schema import Problem, field_path
from sluice.engine.errors import Violation
from sluice.engine.graph import find_cycle, upstream_of
from sluice.engine.model import (
    TASK_STEP_TYPE,
    DependencyRule,
    GateAction,
    GateSpec,
    GateType,
    Operator,
    ParamSpec,
    StepSpec,
    Template,
)
from sluice.engine.validators import WEBHOOK_STEP_TYPE

TEMPLATE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
STEP_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Task types travel in notices between servers as comma-separated lists: no comma, no space.
TASK_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9._:/-]{0,99}$")
TASK_TYPE_RULE = "must be 1-100 letters, digits, '.', '_', '-', ':' or '/', starting with a letter"
# Error types (a failure's kind, as handlers and workers name it) follow the same rule.
ERROR_TYPE = TASK_TYPE
ERROR_TYPE_RULE = TASK_TYPE_RULE.replace("must be", "must be an error type of")
MAX_NON_RETRYABLE = 20
# An approval may wait a long time for its person, but not forever once a timeout is set.
MAX_APPROVAL_TIMEOUT = timedelta(days=366)
PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
METRIC = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,15}$")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_bytes: int = 64 * 1024
    max_depth: int = 20


def check_json(value: Any, field: str, limits: JsonLimits = JsonLimits()) -> list[Violation]:
    """Problems of free-form JSON from a request (params, step config): size, depth, numbers
    JSON cannot hold (NaN, infinity), and NUL characters no database stores."""
    found: list[Violation] = []
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack and len(found) < 10:
        item, where, depth = stack.pop()
        if depth > limits.max_depth:
            found.append(Violation(where, f"nests deeper than {limits.max_depth} levels"))
            continue
        if isinstance(item, float) and not math.isfinite(item):
            found.append(Violation(where, "must be a finite number (not NaN or infinity)"))
        elif isinstance(item, str) and "\x00" in item:
            found.append(Violation(where, "must not contain NUL characters"))
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if "\x00" in str(key):
                    found.append(Violation(where, "has a key with a NUL character"))
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    if not found:
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > limits.max_bytes:
            found.append(
                Violation(field, f"is {size} bytes as JSON; the limit is {limits.max_bytes}")
            )
    return found


def enum_names(prefix: str, values: Iterable[StrEnum]) -> str:
    """The names a client writes in proto JSON ("GATE_ACTION_PAUSE"), in a sentence: each
    domain value is its proto enum value's name without the prefix (see api/convert.py)."""
    names = [f"{prefix}{value.value}" for value in values]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def show(value: str, limit: int = 60) -> str:
    """A user-supplied value quoted for a message, cut short: errors must stay small."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    max_steps: int = 100
    max_gates: int = 100
    max_dependencies: int = 50
    max_params: int = 50
    max_attempts: int = 20
    max_backoff: timedelta = timedelta(hours=1)
    max_timeout: timedelta = timedelta(hours=24)
    max_text: int = 2000


class StepTypes(Protocol):
    """The registered step types (the handler registry)."""

    def __contains__(self, step_type: object) -> bool: ...

    def config_problems(
        self, step_type: str, config: Mapping[str, Any], *, written: bool
    ) -> list[Problem]: ...


def validate_template(
    template: Template, step_types: StepTypes, limits: TemplateLimits = TemplateLimits()
) -> list[Violation]:
    out: list[Violation] = []

    def bad(field: str, description: str) -> None:
        out.append(Violation(field, description))

    if not TEMPLATE_ID.match(template.id):
        bad("id", "must be 1-63 lowercase letters, digits or '-', starting with a letter")
    _check_text("name", template.name, limits, bad)
    _check_text("description", template.description, limits, bad)

    _check_params(template.params, limits, bad)
    step_ids = _check_steps(template, step_types, limits, bad)
    _check_gates(template, step_ids, step_types, limits, bad)
    return out


def _check_text(field: str, text: str, limits: TemplateLimits, bad: Any) -> None:
    if len(text) > limits.max_text:
        bad(field, f"is longer than {limits.max_text} characters")
    elif "\x00" in text:
        bad(field, "must not contain NUL characters")


def _check_params(params: tuple[ParamSpec, ...], limits: TemplateLimits, bad: Any) -> None:
    if len(params) > limits.max_params:
        bad("params", f"has {len(params)} parameters; the limit is {limits.max_params}")
    seen: set[str] = set()
    for i, param in enumerate(params):
        if not PARAM_NAME.match(param.name):
            bad(f"params[{i}].name", "must be letters, digits or '_', starting with a letter")
        elif param.name in seen:
            bad(f"params[{i}].name", f"duplicates parameter {param.name!r}")
        seen.add(param.name)
        _check_text(f"params[{i}].description", param.description, limits, bad)
        for v in check_json(param.default, f"params[{i}].default_value"):
            bad(v.field, v.description)


def _check_steps(
    template: Template, step_types: StepTypes, limits: TemplateLimits, bad: Any
) -> set[str]:
    # An external gate's validator step is checked as part of its gate.
    steps = tuple(s for s in template.steps if not s.validates)
    if not steps:
        bad("steps", "must have at least one step")
    if len(steps) > limits.max_steps:
        bad("steps", f"has {len(steps)} steps; the limit is {limits.max_steps}")
        return {s.id for s in steps}  # checking each of thousands of steps helps nobody
    ids: set[str] = set()
    for i, step in enumerate(steps):
        if not STEP_ID.match(step.id):
            bad(f"steps[{i}].id", "must be 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter")  # fmt: skip
        elif step.id in ids:
            bad(f"steps[{i}].id", f"duplicates step id {step.id!r}")
        ids.add(step.id)

    param_names = {p.name for p in template.params}
    graph = {s.id: s.dependencies for s in steps}
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        _check_text(f"{where}.name", step.name, limits, bad)
        _check_text(f"{where}.description", step.description, limits, bad)
        config_ok = True
        for v in check_json(dict(step.config), f"{where}.config"):
            bad(v.field, v.description)
            config_ok = False
        if step.type not in step_types:
            bad(f"{where}.type", f"unknown step type {show(step.type)}")
        elif config_ok:
            for path, description in step_types.config_problems(
                step.type, step.config, written=True
            ):
                bad(field_path(f"{where}.config", path), description)
        if len(step.dependencies) > limits.max_dependencies:
            bad(f"{where}.dependencies", f"has more than {limits.max_dependencies} entries")
        for j, dep in enumerate(step.dependencies):
            if dep == step.id:
                bad(f"{where}.dependencies[{j}]", "a step cannot depend on itself")
            elif dep not in ids:
                bad(f"{where}.dependencies[{j}]", f"unknown step {show(dep)}")
            elif dep in step.dependencies[:j]:
                bad(f"{where}.dependencies[{j}]", f"lists {dep!r} twice")
        _check_retry_and_timeout(where, step.retry, step.timeout, limits, bad)
        _check_task(where, step, limits, bad)
        _check_references(where, step.config, step.id, graph, param_names, bad)
        _check_condition(where, step, graph, bad)

    cycle = find_cycle({k: tuple(d for d in v if d in ids and d != k) for k, v in graph.items()})
    if cycle:
        index = next(i for i, s in enumerate(steps) if s.id == cycle[0])
        bad(f"steps[{index}].dependencies", "forms a cycle: " + " -> ".join(cycle))
    return ids


def _check_retry_and_timeout(
    where: str, retry: Any, timeout: timedelta | None, limits: TemplateLimits, bad: Any
) -> None:
    if not 1 <= retry.max_attempts <= limits.max_attempts:
        bad(f"{where}.retry.max_attempts", f"must be between 1 and {limits.max_attempts}")
    if not math.isfinite(retry.multiplier) or not 1.0 <= retry.multiplier <= 10.0:
        bad(f"{where}.retry.backoff_multiplier", "must be between 1.0 and 10.0 (0 means 2.0)")
    if not timedelta(0) <= retry.initial_backoff <= limits.max_backoff:
        bad(f"{where}.retry.initial_backoff", f"must be between 0s and {limits.max_backoff}")
    if not timedelta(0) <= retry.max_backoff <= limits.max_backoff:
        bad(f"{where}.retry.max_backoff", f"must be between 0s and {limits.max_backoff}")
    elif retry.max_backoff < retry.initial_backoff:
        bad(f"{where}.retry.max_backoff", "must not be shorter than initial_backoff")
    if not math.isfinite(retry.jitter) or not 0.0 <= retry.jitter <= 1.0:
        bad(f"{where}.retry.jitter", "must be between 0.0 and 1.0 (a fraction of each delay)")
    kinds = retry.non_retryable_errors
    if len(kinds) > MAX_NON_RETRYABLE:
        bad(
            f"{where}.retry.non_retryable_error_types", f"has more than {MAX_NON_RETRYABLE} entries"
        )
    else:
        for k, kind in enumerate(kinds):
            if not ERROR_TYPE.match(kind):
                bad(f"{where}.retry.non_retryable_error_types[{k}]", ERROR_TYPE_RULE)
    if timeout is not None and not timedelta(0) < timeout <= limits.max_timeout:
        bad(f"{where}.timeout", f"must be more than 0s and at most {limits.max_timeout}")


def _check_task(where: str, step: StepSpec, limits: TemplateLimits, bad: Any) -> None:
    """A "task" step names its task type; no other step names one."""
    if step.remote:
        if not step.task_type:
            bad(f"{where}.task_type", f'is required for a step of type "{TASK_STEP_TYPE}"')
        elif not TASK_TYPE.match(step.task_type):
            bad(f"{where}.task_type", TASK_TYPE_RULE)
        start = step.schedule_to_start
        if start is not None and not timedelta(0) < start <= limits.max_timeout:
            bad(
                f"{where}.schedule_to_start_timeout",
                f"must be more than 0s and at most {limits.max_timeout}",
            )
    else:
        if step.task_type:
            bad(f"{where}.task_type", f'only a step of type "{TASK_STEP_TYPE}" names a task type')
        if step.schedule_to_start is not None:
            bad(
                f"{where}.schedule_to_start_timeout",
                f'only a step of type "{TASK_STEP_TYPE}" waits for a worker',
            )


def _check_condition(
    where: str, step: StepSpec, graph: Mapping[str, tuple[str, ...]], bad: Any
) -> None:
    """A `when` condition is safe CEL over params and upstream outputs; ANY_COMPLETED joins
    something."""
    if step.dependency_rule is DependencyRule.ANY_COMPLETED and not step.dependencies:
        bad(f"{where}.dependency_rule", "DEPENDENCY_RULE_ANY_COMPLETED needs dependencies to join")
    if not step.when:
        return
    found = expressions.problems(step.when, expressions.CONDITION_VARIABLES)
    for problem in found:
        bad(f"{where}.when", problem)
    if found:
        return
    upstream = upstream_of(step.id, graph)
    for path in expressions.data_paths(step.when):
        if path[0] == "steps" and len(path) > 1 and path[1] not in upstream:
            bad(f"{where}.when", f"reads steps.{path[1]}, which is not upstream of {step.id!r} "
                "(add it to dependencies, directly or through another step)")  # fmt: skip


def _check_references(
    where: str,
    config: Mapping[str, Any],
    step_id: str,
    graph: Mapping[str, tuple[str, ...]],
    param_names: set[str],
    bad: Any,
) -> None:
    try:
        refs = list(substitution.references(dict(config), f"{where}.config"))
    except substitution.SubstitutionError as exc:
        bad(f"{where}.config", str(exc))
        return
    upstream: set[str] | None = None
    for location, ref in refs:
        if ref.root == "params" and ref.name not in param_names:
            bad(location, f"{{{{ {ref} }}}} names undeclared parameter {ref.name!r}")
        elif ref.root == "steps":
            upstream = upstream if upstream is not None else upstream_of(step_id, graph)
            if ref.name not in upstream:
                bad(location, f"{{{{ {ref} }}}}: step {ref.name!r} is not upstream of {step_id!r}"
                    " (add it to dependencies, directly or through another step)")  # fmt: skip


def _check_gates(
    template: Template,
    step_ids: set[str],
    step_types: StepTypes,
    limits: TemplateLimits,
    bad: Any,
) -> None:
    if len(template.gates) > limits.max_gates:
        bad("quality_gates", f"has {len(template.gates)} gates; the limit is {limits.max_gates}")
        return
    seen: set[str] = set()
    for i, gate in enumerate(template.gates):
        where = f"quality_gates[{i}]"
        if not STEP_ID.match(gate.id):
            bad(f"{where}.id", "must be 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter")  # fmt: skip
        elif gate.id in seen:
            bad(f"{where}.id", f"duplicates gate id {gate.id!r}")
        seen.add(gate.id)
        if not gate.step_id:
            bad(f"{where}.step_id", "must name the step after which the gate is checked")
        elif gate.step_id not in step_ids:
            bad(f"{where}.step_id", f"unknown step {show(gate.step_id)}")
        _check_text(f"{where}.name", gate.name, limits, bad)
        match gate.type:
            case GateType.THRESHOLD:
                if not METRIC.match(gate.metric):
                    bad(
                        f"{where}.threshold.metric",
                        "must be a dotted path of names, e.g. 'qualityScore'",
                    )
                if gate.operator is None:
                    bad(f"{where}.threshold.operator",
                        f"must be one of {enum_names('COMPARISON_OPERATOR_', Operator)}")  # fmt: skip
                if not math.isfinite(gate.threshold):
                    bad(f"{where}.threshold.threshold", "must be a finite number")
            case GateType.VALIDATION:
                for problem in expressions.problems(gate.expression):
                    bad(f"{where}.validation.expression", problem)
            case GateType.APPROVAL:
                if gate.action not in (None, GateAction.PAUSE):
                    bad(f"{where}.action", "an approval gate always waits, so its action must "
                        "be GATE_ACTION_PAUSE or left out")  # fmt: skip
                timeout = gate.approval_timeout
                if timeout is not None and not timedelta(0) < timeout <= MAX_APPROVAL_TIMEOUT:
                    bad(f"{where}.approval.timeout",
                        f"must be more than 0s and at most {MAX_APPROVAL_TIMEOUT.days} days")  # fmt: skip
                if timeout is None and gate.on_timeout is not None:
                    bad(f"{where}.approval.on_timeout", "acts at a timeout: set timeout too")
            case GateType.EXTERNAL:
                _check_external(where, gate, step_ids, step_types, limits, bad)
            case None:
                bad(f"{where}.condition", "set one of threshold, validation, approval or external")
        checked = (GateType.THRESHOLD, GateType.VALIDATION, GateType.EXTERNAL)
        if gate.type in checked and gate.action is None:
            bad(f"{where}.action", f"must be {enum_names('GATE_ACTION_', GateAction)}")


def _check_external(
    where: str,
    gate: GateSpec,
    step_ids: set[str],
    step_types: StepTypes,
    limits: TemplateLimits,
    bad: Any,
) -> None:
    """Who answers, and how its attempts are bounded; the gate's id names its validator step
    in runs, so no step may have it."""
    if gate.id in step_ids:
        bad(f"{where}.id", f"an external gate's id names its validator step in the run: "
            f"{gate.id!r} is already a step's id")  # fmt: skip
    if bool(gate.webhook_url) == bool(gate.task_type):
        bad(f"{where}.external", "set exactly one of webhook_url or task_type")
    elif gate.webhook_url:
        validator = validators.validator_step(gate)
        if WEBHOOK_STEP_TYPE not in step_types:
            bad(f"{where}.external.webhook_url", "this server has no http step type")
        else:
            problems = step_types.config_problems(WEBHOOK_STEP_TYPE, validator.config, written=True)
            for path, description in problems:
                if path == "url":
                    bad(f"{where}.external.webhook_url", description)
    elif not TASK_TYPE.match(gate.task_type):
        bad(f"{where}.external.task_type", TASK_TYPE_RULE)
    _check_retry_and_timeout(
        f"{where}.external", gate.validator_retry, gate.validator_timeout, limits, bad
    )


def bind_params(
    template: Template, given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Violation]]:
    """The run's params: `given` plus defaults; violations for unknown or missing ones."""
    declared = {p.name: p for p in template.params}
    violations = check_json(dict(given), "params")
    takes = f"; it takes {', '.join(sorted(declared))}" if declared else "; it takes none"
    violations += [
        Violation(f"params.{name[:64]}", f"is not a parameter of template {template.id!r}{takes}")
        for name in list(given)[:20] if name not in declared
    ]  # fmt: skip
    params: dict[str, Any] = {}
    for spec in template.params:
        if spec.name in given and given[spec.name] is not None:
            params[spec.name] = given[spec.name]
        elif spec.default is not None:
            params[spec.name] = spec.default
        elif spec.required:
            violations.append(Violation(f"params.{spec.name}", "is required"))
    return params, violations
