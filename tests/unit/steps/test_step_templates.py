"""The predefined templates: they parse as sluice.v1.Template, use only built-in step types,
have the agreed shape, and run end to end through the built-in handlers with gates passing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cel
import pytest
from google.protobuf import json_format

from sluice.engine.handlers import StepContext
from sluice.engine.model import TASK_STEP_TYPE
from sluice.steps import BUILTIN_STEP_TYPES, builtin_registry
from sluice.v1 import template_pb2
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]
TEMPLATES = Path(__file__).resolve().parents[3] / "server" / "sluice" / "templates"
IDS = (
    "content-to-social",
    "listing-campaign",
    "market-analysis-report",
    "monthly-market-newsletter",
    "new-listing-launch",
    "open-house-promotion",
    "price-change-announcement",
    "review-request-after-sale",
)
ANY = template_pb2.DEPENDENCY_RULE_ANY_COMPLETED


def load(template_id: str) -> template_pb2.Template:
    text = (TEMPLATES / f"{template_id}.json").read_text()
    return json_format.Parse(text, template_pb2.Template())


def shape(t: template_pb2.Template) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {s.id: (s.type, tuple(s.dependencies)) for s in t.steps}


def test_exactly_these_templates_ship() -> None:
    assert sorted(p.stem for p in TEMPLATES.glob("*.json")) == sorted(IDS)


@pytest.mark.parametrize("template_id", IDS)
def test_template_parses_and_uses_builtin_types(template_id: str) -> None:
    template = load(template_id)
    assert template.id == template_id
    assert template.name and template.description
    registry = builtin_registry()
    for step in template.steps:
        assert step.type in BUILTIN_STEP_TYPES
        assert step.type in registry
        assert step.name and step.description
    # Every param is documented, and only required ones go without a default.
    for param in template.params:
        assert param.description, param.name
        assert param.required != param.HasField("default_value"), param.name
    # Every handler of the server, and the step type served by workers.
    assert {*BUILTIN_STEP_TYPES, TASK_STEP_TYPE} == set(registry.types())


def test_content_to_social_shape() -> None:
    t = load("content-to-social")
    assert shape(t) == {
        "generate-content": ("generate", ()),
        "review-content": ("review", ("generate-content",)),
        "schedule-post": ("schedule", ("review-content",)),
        "wait-for-slot": ("wait", ("schedule-post",)),
        "post-content": ("post", ("schedule-post", "wait-for-slot")),
        "analyze-performance": ("analyze", ("post-content",)),
    }
    steps = {s.id: s for s in t.steps}
    retry = steps["generate-content"].retry
    assert (retry.max_attempts, retry.initial_backoff.seconds, retry.backoff_multiplier) == (
        3,
        1,
        2,
    )
    assert steps["post-content"].retry.max_attempts == 3
    assert steps["analyze-performance"].optional
    # The wait for the slot runs only with waitForSlot; the post joins either way.
    assert steps["wait-for-slot"].when == "params.waitForSlot == true"
    assert steps["post-content"].dependency_rule == template_pb2.DEPENDENCY_RULE_ANY_COMPLETED
    assert json_format.MessageToDict(steps["review-content"].config)["checks"] == [
        "grammar",
        "compliance",
        "brand",
        "seo",
    ]
    params = {p.name: p for p in t.params}
    assert params["topic"].required
    assert params["platform"].default_value.string_value == "facebook"
    assert params["tone"].default_value.string_value == "friendly"
    assert params["timezone"].default_value.string_value == "UTC"
    assert params["publishAt"].default_value.string_value == ""
    assert params["waitForSlot"].default_value.bool_value is False
    gates = {g.id: g for g in t.quality_gates}
    quality = gates["quality-check"]
    assert (quality.step_id, quality.threshold.metric, quality.threshold.threshold) == (
        "review-content",
        "qualityScore",
        0.7,
    )
    assert quality.threshold.operator == template_pb2.COMPARISON_OPERATOR_GTE
    assert quality.action == template_pb2.GATE_ACTION_PAUSE
    approval = gates["publish-approval"]
    assert approval.WhichOneof("condition") == "approval"
    assert approval.step_id == "schedule-post"


def test_listing_campaign_shape() -> None:
    t = load("listing-campaign")
    generators = (
        "generate-listing-description",
        "generate-social-posts",
        "generate-email-campaign",
    )
    assert shape(t) == {
        **dict.fromkeys(generators, ("generate", ())),
        "review-content": ("review", generators),
        "schedule-social-posts": ("schedule", ("review-content",)),
        "schedule-email-campaign": ("schedule", ("review-content",)),
        "notify-completion": ("notify", ("schedule-social-posts", "schedule-email-campaign")),
    }
    params = {p.name: p for p in t.params}
    assert [n for n, p in params.items() if p.required] == ["listingId", "address", "price"]
    assert all(p.HasField("default_value") for p in params.values() if not p.required)
    assert params["platform"].default_value.string_value == "instagram"
    steps = {s.id: s for s in t.steps}
    assert steps["schedule-email-campaign"].config["platform"] == "email"
    gates = {g.id: g for g in t.quality_gates}
    assert gates["fair-housing"].validation.expression == (
        'output.issues.filter(i, i.check == "compliance").size() == 0'
    )
    assert gates["fair-housing"].action == template_pb2.GATE_ACTION_ABORT
    assert gates["quality-check"].threshold.metric == "qualityScore"
    assert gates["quality-check"].action == template_pb2.GATE_ACTION_PAUSE
    assert {g.step_id for g in t.quality_gates} == {"review-content"}


def test_market_analysis_report_shape() -> None:
    t = load("market-analysis-report")
    assert shape(t) == {
        "analyze-market-trends": ("analyze", ()),
        "identify-opportunities": ("analyze", ("analyze-market-trends",)),
        "generate-report": ("generate", ("identify-opportunities",)),
        "review-report": ("review", ("generate-report",)),
        "notify-user": ("notify", ("review-report",)),
    }
    steps = {s.id: s for s in t.steps}
    assert steps["analyze-market-trends"].config["source"] == "market"
    assert steps["identify-opportunities"].config["focus"] == "opportunities"
    assert steps["generate-report"].config["contentType"] == "report"
    assert json_format.MessageToDict(steps["review-report"].config)["checks"] == ["grammar", "seo"]
    params = {p.name: p for p in t.params}
    assert params["location"].required
    assert params["timeframe"].default_value.string_value == "90days"
    (gate,) = t.quality_gates
    assert (gate.id, gate.step_id, gate.threshold.metric) == (
        "report-quality",
        "review-report",
        "qualityScore",
    )
    assert gate.action == template_pb2.GATE_ACTION_PAUSE


def when(t: template_pb2.Template) -> dict[str, str]:
    return {s.id: s.when for s in t.steps if s.when}


def joins(t: template_pb2.Template) -> set[str]:
    return {s.id for s in t.steps if s.dependency_rule == ANY}


def config(t: template_pb2.Template, step_id: str) -> dict[str, Any]:
    [found] = [s for s in t.steps if s.id == step_id]
    return json_format.MessageToDict(found.config)


def approvals(t: template_pb2.Template) -> dict[str, tuple[str, int, int]]:
    """Approval gates: (step, timeout in seconds, on-timeout action)."""
    return {
        g.id: (g.step_id, g.approval.timeout.seconds, g.approval.on_timeout)
        for g in t.quality_gates
        if g.WhichOneof("condition") == "approval"
    }


def test_open_house_promotion_shape() -> None:
    t = load("open-house-promotion")
    assert shape(t) == {
        "generate-announcement": ("generate", ()),
        "review-announcement": ("review", ("generate-announcement",)),
        "post-announcement": ("post", ("review-announcement",)),
        "wait-for-reminder": ("wait", ("post-announcement",)),
        "generate-reminder": ("generate", ("wait-for-reminder",)),
        "post-reminder": ("post", ("generate-reminder",)),
        "wait-for-end": ("wait", ("post-reminder",)),
        "generate-follow-up": ("generate", ("wait-for-end",)),
        "send-follow-up": ("post", ("generate-follow-up",)),
        "notify-agent": ("notify", ("post-reminder", "send-follow-up")),
    }
    assert config(t, "wait-for-reminder") == {"until": "{{ params.reminderAt }}"}
    assert config(t, "wait-for-end") == {"until": "{{ params.openHouseEnd }}"}
    assert when(t) == {"wait-for-end": "params.sendFollowUp == true"}
    assert joins(t) == {"notify-agent"}
    params = {p.name: p for p in t.params}
    assert [n for n, p in params.items() if p.required] == [
        "address", "openHouseStart", "openHouseEnd", "reminderAt",
    ]  # fmt: skip
    assert params["sendFollowUp"].default_value.bool_value is True
    assert [g.id for g in t.quality_gates] == ["quality-check"]


def test_price_change_announcement_shape() -> None:
    t = load("price-change-announcement")
    drop = ("generate-price-drop-post", "generate-price-drop-email")
    assert shape(t) == {
        **dict.fromkeys(drop, ("generate", ())),
        "review-price-drop": ("review", drop),
        "post-price-drop": ("post", ("review-price-drop",)),
        "send-price-drop-email": ("post", ("review-price-drop",)),
        "generate-updated-description": ("generate", ()),
        "review-updated-description": ("review", ("generate-updated-description",)),
        "publish-updated-description": ("post", ("review-updated-description",)),
        "notify-agent": (
            "notify",
            ("post-price-drop", "send-price-drop-email", "publish-updated-description"),
        ),
    }
    lower = "double(params.newPrice) < double(params.oldPrice)"
    assert when(t) == {
        **dict.fromkeys(drop, lower),
        "generate-updated-description": "double(params.newPrice) > double(params.oldPrice)",
    }
    assert joins(t) == {"notify-agent"}
    assert approvals(t) == {
        "description-approval": (
            "review-updated-description", 86400, template_pb2.APPROVAL_TIMEOUT_ACTION_REJECT,
        )
    }  # fmt: skip
    gates = {g.id: g for g in t.quality_gates}
    assert gates["fair-housing"].action == template_pb2.GATE_ACTION_ABORT
    assert gates["fair-housing"].step_id == gates["quality-check"].step_id == "review-price-drop"


def test_new_listing_launch_shape() -> None:
    t = load("new-listing-launch")
    platforms = ("facebook", "instagram", "linkedin")
    assert shape(t) == {
        "generate-listing-description": ("generate", ()),
        "review-listing": ("review", ("generate-listing-description",)),
        "publish-listing": ("post", ("review-listing",)),
        **{f"generate-{p}-post": ("generate", ("review-listing",)) for p in platforms},
        **{f"post-{p}": ("post", (f"generate-{p}-post",)) for p in platforms},
        "generate-email": ("generate", ("review-listing",)),
        "schedule-email": ("schedule", ("generate-email",)),
        "send-email": ("post", ("schedule-email",)),
        "notify-agent": (
            "notify",
            ("publish-listing", *(f"post-{p}" for p in platforms), "send-email"),
        ),
    }
    assert when(t) == {
        "generate-facebook-post": "params.postToFacebook == true",
        "generate-instagram-post": "params.postToInstagram == true",
        "generate-linkedin-post": "params.postToLinkedin == true",
        "generate-email": "params.sendEmail == true",
    }
    assert joins(t) == {"notify-agent"}
    for p in platforms:
        assert config(t, f"post-{p}") == {"platform": p, "sourceStep": f"generate-{p}-post"}
    defaults = {p.name: p.default_value.bool_value for p in t.params if p.name.startswith("postTo")}
    assert defaults == {"postToFacebook": True, "postToInstagram": True, "postToLinkedin": False}
    assert approvals(t) == {
        "launch-approval": ("review-listing", 172800, template_pb2.APPROVAL_TIMEOUT_ACTION_FAIL)
    }
    assert [g.id for g in t.quality_gates] == ["fair-housing", "quality-check", "launch-approval"]


def test_monthly_market_newsletter_shape() -> None:
    t = load("monthly-market-newsletter")
    assert shape(t) == {
        "analyze-market": ("analyze", ()),
        "identify-opportunities": ("analyze", ("analyze-market",)),
        "generate-newsletter": ("generate", ("identify-opportunities",)),
        "review-newsletter": ("review", ("generate-newsletter",)),
        "schedule-newsletter": ("schedule", ("review-newsletter",)),
        "wait-for-slot": ("wait", ("schedule-newsletter",)),
        "send-newsletter": ("post", ("schedule-newsletter", "wait-for-slot")),
        "notify-editor": ("notify", ("send-newsletter",)),
    }
    assert config(t, "wait-for-slot") == {"until": "{{ steps.schedule-newsletter.scheduledTime }}"}
    assert when(t) == {"wait-for-slot": "params.waitForSlot == true"}
    assert joins(t) == {"send-newsletter"}
    assert approvals(t) == {
        "editor-approval": (
            "review-newsletter",
            86400,
            template_pb2.APPROVAL_TIMEOUT_ACTION_APPROVE,
        )
    }
    params = {p.name: p for p in t.params}
    assert [n for n, p in params.items() if p.required] == ["location"]
    assert params["waitForSlot"].default_value.bool_value is True


def test_review_request_after_sale_shape() -> None:
    t = load("review-request-after-sale")
    assert shape(t) == {
        "wait-after-closing": ("wait", ()),
        "generate-request": ("generate", ("wait-after-closing",)),
        "review-request": ("review", ("generate-request",)),
        "send-request": ("post", ("review-request",)),
        "wait-for-reminder": ("wait", ("send-request",)),
        "generate-reminder": ("generate", ("wait-for-reminder",)),
        "send-reminder": ("post", ("generate-reminder",)),
        "notify-agent": ("notify", ("send-request", "send-reminder")),
    }
    # The waits take their durations from params, so a test (or a user) can shorten them.
    assert config(t, "wait-after-closing") == {"duration": "{{ params.followUpAfter }}"}
    assert config(t, "wait-for-reminder") == {"duration": "{{ params.reminderAfter }}"}
    assert when(t) == {"wait-for-reminder": "params.sendReminder == true"}
    assert joins(t) == {"notify-agent"}
    params = {p.name: p for p in t.params}
    assert params["followUpAfter"].default_value.string_value == "3d"
    assert params["reminderAfter"].default_value.string_value == "7d"
    assert config(t, "review-request")["brand"] == {"required": ["{{ params.reviewUrl }}"]}


# --- end to end through the handlers -------------------------------------------------------

_REF = re.compile(r"\{\{\s*(params|steps)\.([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_-]+)*)\s*\}\}")


def _resolve(value: Any, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """A stand-in for the engine's substitution, enough for these templates."""

    def lookup(match: re.Match[str]) -> Any:
        current = (params if match[1] == "params" else outputs)[match[2]]
        for key in filter(None, match[3].split(".")):
            current = current[key]
        return current

    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            return lookup(whole)
        return _REF.sub(lambda m: str(lookup(m)), value)
    if isinstance(value, Mapping):
        return {k: _resolve(v, params, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params, outputs) for v in value]
    return value


async def run_template(
    make_ctx: MakeCtx, template_id: str, given: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    template = json_format.MessageToDict(load(template_id))
    params = {p["name"]: given.get(p["name"], p.get("defaultValue")) for p in template["params"]}
    deps = {s["id"]: s.get("dependencies", []) for s in template["steps"]}
    registry = builtin_registry()
    outputs: dict[str, dict[str, Any]] = {}
    pending = list(template["steps"])
    while pending:
        step = next(s for s in pending if all(d in outputs for d in deps[s["id"]]))
        pending.remove(step)
        if step["type"] == "wait":
            # The engine keeps waits (and judges `when`); with the default params this one is
            # skipped, and its dependant joins without it.
            outputs[step["id"]] = {}
            continue
        upstream: set[str] = set()
        frontier = list(deps[step["id"]])
        while frontier:
            dep = frontier.pop()
            if dep not in upstream:
                upstream.add(dep)
                frontier += deps[dep]
        ctx = make_ctx(
            step["type"],
            _resolve(step.get("config", {}), params, outputs),
            params=params,
            inputs={d: outputs[d] for d in deps[step["id"]]},
            upstream={d: outputs[d] for d in upstream},
            step_id=step["id"],
        )
        result = await run_step(registry.get(step["type"]), ctx)
        json.dumps(result.output)  # outputs must be plain JSON for the store's Struct
        outputs[step["id"]] = result.output
    return outputs


def failed_gates(template_id: str, outputs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Ids of the threshold (all GTE here) and validation gates the outputs would fail."""
    failed = []
    for gate in json_format.MessageToDict(load(template_id)).get("qualityGates", []):
        output = outputs[gate["stepId"]]
        if "threshold" in gate:
            ok = output[gate["threshold"]["metric"]] >= gate["threshold"]["threshold"]
        elif "validation" in gate:
            program = cel.compile(gate["validation"]["expression"])
            ok = program.execute({"output": dict(output), "steps": dict(outputs), "params": {}})
        else:
            continue
        if not ok:
            failed.append(gate["id"])
    return failed


async def test_content_to_social_runs(make_ctx: MakeCtx) -> None:
    out = await run_template(
        make_ctx,
        "content-to-social",
        {"topic": "Spring market update", "timezone": "America/New_York"},
    )
    assert failed_gates("content-to-social", out) == []
    assert out["review-content"]["qualityScore"] >= 0.85
    assert out["schedule-post"]["scheduledTime"] == "2025-03-04T13:00:00-05:00"
    assert out["post-content"]["scheduledTime"] == out["schedule-post"]["scheduledTime"]
    assert out["analyze-performance"]["metrics"]["reach"] > 0


async def test_listing_campaign_runs(make_ctx: MakeCtx) -> None:
    out = await run_template(
        make_ctx,
        "listing-campaign",
        {"listingId": "l-1", "address": "123 Main St", "price": 500000.0},
    )
    assert failed_gates("listing-campaign", out) == []
    review = out["review-content"]
    assert review["reviewedSteps"] == sorted(
        ["generate-listing-description", "generate-social-posts", "generate-email-campaign"]
    )
    assert out["schedule-email-campaign"]["platform"] == "email"
    message = out["notify-completion"]["message"]
    assert "123 Main St" in message
    assert out["schedule-social-posts"]["scheduledTime"] in message


async def test_listing_campaign_fails_fair_housing_on_a_violation(make_ctx: MakeCtx) -> None:
    out = await run_template(
        make_ctx,
        "listing-campaign",
        {"listingId": "l-1", "address": "1 Elm Rd", "price": 1.0, "features": ["adults only"]},
    )
    assert failed_gates("listing-campaign", out) == ["fair-housing", "quality-check"]


async def test_market_analysis_report_runs(make_ctx: MakeCtx) -> None:
    out = await run_template(make_ctx, "market-analysis-report", {"location": "San Francisco, CA"})
    assert failed_gates("market-analysis-report", out) == []
    assert out["analyze-market-trends"]["dataSource"] == "built-in sample data"
    assert out["identify-opportunities"]["opportunityCount"] >= 1
    assert "San Francisco, CA" in out["generate-report"]["content"]
    assert "San Francisco, CA" in out["notify-user"]["message"]
