"""The built-in step types' config schemas: what passes, what a typical mistake is told, and
that a "{{ ... }}" value is judged only once resolved."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.engine.config_schema import MAX_PROBLEMS
from sluice.engine.validation import validate_template
from sluice.steps import BUILTIN_STEP_TYPES, builtin_registry
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList
from sluice.templates import load_predefined

REGISTRY = builtin_registry(HttpClient(WebhookAllowList.parse("hooks.example.com")))

VALID: dict[str, dict[str, Any]] = {
    "generate": {
        "contentType": "listing-description", "title": "Just listed", "text": "Big yard.",
        "topic": "Spring",
        "tone": "friendly", "platform": "instagram", "address": "1 Elm Rd", "price": 500000.0,
        "bedrooms": 3.0, "bathrooms": "2", "features": ["a yard", "a pool"],
        "location": "Austin", "timeframe": "90days",
    },
    "review": {
        "checks": ["grammar", "seo"], "brand": {"required": ["Acme"], "forbidden": ["cheap"]},
        "seo": {"minWords": 10.0, "maxWords": 300.0, "keywords": "spring, market"},
        "content": ["Some text."],
    },
    "schedule": {
        "platform": "x", "timezone": "America/New_York", "minLeadMinutes": 30.0,
        "slots": {"mon": ["09:00", "13:30"], "friday": "7:00"},
        "publishAt": "",
    },
    "post": {
        "platform": "blog", "content": "Hello", "title": "Hi", "sourceStep": "gen",
        "webhookUrl": "https://hooks.example.com/post",
    },
    "analyze": {
        "focus": "performance", "source": "run", "metrics": "reach, posts",
        "duration": "2 weeks", "location": "Austin", "timeframe": "6months",
    },
    "transform": {
        "transformation": "aggregate", "inputData": [{"price": 1}], "groupBy": "city",
        "aggregations": {"n": {"op": "count"}, "total": {"op": "sum", "field": "price"}},
        "format": "csv", "where": {"city": "Austin"}, "fields": ["price"],
    },
    "notify": {
        "message": "Done", "recipients": ["ann", "bo"], "channel": "email",
        "webhookUrl": "https://hooks.example.com/notify",
    },
    "http": {
        "url": "https://hooks.example.com/orders", "method": "POST",
        "headers": {"Authorization": "Bearer x", "X-Count": 3.0}, "query": {"tag": ["a", "b"]},
        "body": {"id": 1.0}, "expectedStatuses": [201.0, "4xx"], "timeoutSeconds": 2.5,
        "responseHeaders": ["x-request-id"],
    },
    "wait": {"duration": "1h30m"},
}  # fmt: skip


# Keys left out of VALID because they exclude one that is in it.
ALTERNATIVES = {"http": {"bodyText"}, "wait": {"until"}}


def problems(step_type: str, config: dict[str, Any], *, written: bool = False) -> dict[str, str]:
    return dict(REGISTRY.config_problems(step_type, config, written=written))


def test_every_builtin_type_declares_a_closed_schema() -> None:
    for step_type in BUILTIN_STEP_TYPES:
        schema = REGISTRY.config_schema(step_type)
        assert schema is not None and schema["additionalProperties"] is False, step_type


@pytest.mark.parametrize("step_type", BUILTIN_STEP_TYPES)
def test_a_full_valid_config_has_no_problem(step_type: str) -> None:
    keys = set(VALID[step_type]) | ALTERNATIVES.get(step_type, set())
    assert keys == set(REGISTRY.config_schema(step_type)["properties"])  # type: ignore[index]
    assert problems(step_type, VALID[step_type]) == {}
    assert problems(step_type, VALID[step_type], written=True) == {}


def test_the_predefined_templates_pass() -> None:
    for template in load_predefined():
        assert validate_template(template, REGISTRY) == [], template.id


@pytest.mark.parametrize(
    ("step_type", "config", "expected"),
    [
        ("generate", {}, {"contentType": "is required"}),
        (
            "generate",
            {"contentTyp": "email"},
            {"contentType": "is required", "contentTyp": "did you mean 'contentType'?"},
        ),
        ("generate", {"contentType": "tweet"}, {"contentType": "must be one of 'blog-post'"}),
        ("generate", {"contentType": "email", "price": [1]}, {"price": "a string or a number"}),
        ("review", {"checks": ["gramar"]}, {"checks[0]": "(got 'gramar')"}),
        ("review", {"checks": []}, {"checks": "must not be empty"}),
        ("review", {"checks": "grammar, spelling"}, {"checks": "or those names in one text"}),
        ("review", {"seo": {"minWords": 50, "maxWords": 10}}, {"seo.maxWords": "seo.minWords"}),
        ("review", {"seo": {"minWords": -1}}, {"seo.minWords": "at least 0"}),
        ("review", {"brand": {"require": ["x"]}}, {"brand.require": "did you mean 'required'?"}),
        ("review", {"content": 5}, {"content": "a string or a list (got a number)"}),
        ("schedule", {"timezone": "Mars/Olympus_Mons"}, {"timezone": "not a known IANA"}),
        ("schedule", {"platform": "myspace"}, {"platform": "no built-in time slots"}),
        ("schedule", {"slots": {"mon": ["25:00"]}}, {"slots.mon[0]": "a time like 09:00"}),
        ("schedule", {"slots": {"funday": ["09:00"]}}, {"slots.funday": "not a known key"}),
        ("schedule", {"slots": {}}, {"slots": "must not be empty"}),
        ("schedule", {"minLeadMinutes": 1.5}, {"minLeadMinutes": "a whole number"}),
        (
            "post",
            {"webhookUrl": "https://example.com/x"},
            {
                "webhookUrl": "host example.com:443 is not allowed: the server's SLUICE_WEBHOOK_ALLOW"
            },
        ),
        ("post", {"webhookUrl": "ftp://hooks.example.com/"}, {"webhookUrl": "http or https"}),
        ("notify", {"recipients": [{"id": 1}]}, {"recipients[0]": "a string or a number"}),
        ("notify", {"webhookUrl": "http://10.0.0.1/"}, {"webhookUrl": "SLUICE_WEBHOOK_ALLOW"}),
        ("analyze", {"source": "crystal-ball"}, {"source": "'run' or 'market'"}),
        ("analyze", {"metrics": ["reach", "vibes"]}, {"metrics[1]": "(got 'vibes')"}),
        ("analyze", {"duration": "0days"}, {"duration": "a period like 24h"}),
        ("transform", {"inputData": []}, {"transformation": "is required"}),
        ("transform", {"transformation": "format"}, {"inputData": "is required"}),
        (
            "transform",
            {"transformation": "format", "inputData": [], "format": "xml"},
            {"format": "must be one of 'json', 'csv', 'markdown' or 'text' (got 'xml')"},
        ),
        (
            "transform",
            {"transformation": "filter", "inputData": []},
            {"": "needs at least one of where or fields when transformation is 'filter'"},
        ),
        (
            "transform",
            {"transformation": "aggregate", "inputData": []},
            {"aggregations": "is required when transformation is 'aggregate'"},
        ),
        (
            "transform",
            {"transformation": "aggregate", "inputData": [], "aggregations": {}},
            {"aggregations": "must not be empty"},
        ),
        (
            "transform",
            {
                "transformation": "aggregate",
                "inputData": [],
                "aggregations": {
                    "total": {"op": "median", "field": "p"},
                    "sum": {"op": "sum"},
                    "n": {"op": "count", "feild": "p"},
                    "bad": "sum",
                },
            },
            {
                "aggregations.total.op": "(got 'median')",
                "aggregations.sum.field": "is required when op is 'sum', 'avg', 'min' or 'max'",
                "aggregations.n.feild": "did you mean 'field'?",
                "aggregations.bad": "must be an object (got a string)",
            },
        ),
    ],
)
def test_typical_mistakes_are_named_at_their_path(
    step_type: str, config: dict[str, Any], expected: dict[str, str]
) -> None:
    found = problems(step_type, config)
    assert set(found) == set(expected), found
    for path, fragment in expected.items():
        assert fragment in found[path], (path, found[path])
    assert all("valid under" not in text for text in found.values()), "jsonschema's own words"


@pytest.mark.parametrize(
    ("step_type", "config"),
    [
        ("schedule", {"minLeadMinutes": "{{ params.lead }}", "timezone": "{{ params.tz }}"}),
        ("schedule", {"slots": {"mon": ["{{ params.hour }}:00"]}}),
        ("review", {"checks": "{{ params.checks }}", "seo": {"minWords": "{{ params.min }}"}}),
        ("transform", {"transformation": "{{ params.kind }}", "inputData": "{{ steps.a.b }}"}),
    ],
)
def test_substituted_values_are_judged_once_resolved(
    step_type: str, config: dict[str, Any]
) -> None:
    assert problems(step_type, config, written=True) == {}
    # The same strings reaching a step unresolved would be wrong: the engine checks the
    # resolved config before each attempt.
    assert problems(step_type, config) != {}


def test_a_substituted_webhook_url_is_checked_when_it_is_called() -> None:
    assert problems("notify", {"webhookUrl": "{{ params.url }}"}, written=True) == {}


def test_a_config_with_many_problems_is_cut_short() -> None:
    aggregations = {f"m{i}": {"op": "median"} for i in range(30)}
    config = {"transformation": "aggregate", "inputData": [], "aggregations": aggregations}
    found = REGISTRY.config_problems("transform", config, written=True)
    assert len(found) == MAX_PROBLEMS
    assert found[-1] == ("", "and 21 more problems in this config")
