from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps.transform import TransformStep
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]

HOMES: list[dict[str, Any]] = [
    {"id": "a", "city": "Austin", "price": 500000.0, "beds": 3.0, "agent": {"name": "Ann"}},
    {"id": "b", "city": "Boise", "price": 300000.0, "beds": 2.0, "agent": {"name": "Bo"}},
    {"id": "c", "city": "Austin", "price": 700000.0, "beds": 4.0, "agent": {"name": "Ann"}},
]


async def transform(make_ctx: MakeCtx, **config: Any) -> dict[str, Any]:
    return (await run_step(TransformStep(), make_ctx("transform", config))).output


async def test_format_json(make_ctx: MakeCtx) -> None:
    out = await transform(make_ctx, transformation="format", inputData=HOMES)
    assert json.loads(out["result"]) == HOMES
    assert out["count"] == 3
    assert out["transformation"] == "format"


async def test_format_csv(make_ctx: MakeCtx) -> None:
    data = [{"id": "a", "price": 500000.0}, {"id": "b", "note": "has, comma"}]
    out = await transform(make_ctx, transformation="format", format="csv", inputData=data)
    assert out["result"] == 'id,price,note\na,500000,\nb,,"has, comma"\n'


async def test_format_markdown(make_ctx: MakeCtx) -> None:
    data = [{"id": "a", "note": "x|y"}, {"id": "b"}]
    out = await transform(make_ctx, transformation="format", format="markdown", inputData=data)
    assert out["result"] == "| id | note |\n| --- | --- |\n| a | x\\|y |\n| b |  |"
    listed = await transform(
        make_ctx, transformation="format", format="markdown", inputData=[1, "two"]
    )
    assert listed["result"] == "- 1\n- two"


async def test_format_text(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx, transformation="format", format="text", inputData={"a": 1.0, "b": [1, 2]}
    )
    assert out["result"] == "a: 1, b: [1, 2]"
    assert out["count"] == 1


async def test_json_text_input_is_parsed(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx, transformation="filter", inputData=json.dumps(HOMES), where={"id": "b"}
    )
    assert out["result"] == [HOMES[1]]


async def test_filter_where_and_fields(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx,
        transformation="filter",
        inputData=HOMES,
        where={"city": "Austin", "agent.name": "Ann"},
        fields=["id", "price", "agent.name", "missing"],
    )
    assert out["result"] == [
        {"id": "a", "price": 500000.0, "agent.name": "Ann"},
        {"id": "c", "price": 700000.0, "agent.name": "Ann"},
    ]
    assert out["count"] == 2


async def test_filter_matches_integers_and_floats(make_ctx: MakeCtx) -> None:
    out = await transform(make_ctx, transformation="filter", inputData=HOMES, where={"beds": 3})
    assert [h["id"] for h in out["result"]] == ["a"]


async def test_aggregate_all(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx,
        transformation="aggregate",
        inputData=HOMES,
        aggregations={
            "homes": {"op": "count"},
            "total": {"op": "sum", "field": "price"},
            "average": {"op": "avg", "field": "price"},
            "cheapest": {"op": "min", "field": "price"},
            "priciest": {"op": "max", "field": "price"},
            "withPool": {"op": "count", "field": "pool"},
        },
    )
    assert out["result"] == {
        "homes": 3,
        "total": 1500000,
        "average": 500000.0,
        "cheapest": 300000,
        "priciest": 700000,
        "withPool": 0,
    }
    assert out["count"] == 1


async def test_aggregate_grouped(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx,
        transformation="aggregate",
        inputData=HOMES,
        groupBy="city",
        aggregations={"homes": {"op": "count"}, "avgPrice": {"op": "avg", "field": "price"}},
    )
    assert out["result"] == [
        {"city": "Austin", "homes": 2, "avgPrice": 600000.0},
        {"city": "Boise", "homes": 1, "avgPrice": 300000.0},
    ]
    assert out["count"] == 2


async def test_aggregate_of_nothing(make_ctx: MakeCtx) -> None:
    out = await transform(
        make_ctx,
        transformation="aggregate",
        inputData=[],
        aggregations={"total": {"op": "sum", "field": "p"}, "avg": {"op": "avg", "field": "p"}},
    )
    assert out["result"] == {"total": 0, "avg": None}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"inputData": []}, r"config\.transformation: is required"),
        ({"transformation": "explode", "inputData": []}, r"config\.transformation"),
        ({"transformation": "format"}, r"config\.inputData"),
        ({"transformation": "format", "inputData": [], "format": "xml"}, r"config\.format"),
        ({"transformation": "format", "inputData": "{broken"}, r"config\.inputData"),
        (
            {"transformation": "filter", "inputData": {"a": 1}, "where": {"a": 1}},
            r"config\.inputData",
        ),
        ({"transformation": "filter", "inputData": []}, r"needs at least one of where or fields"),
        ({"transformation": "aggregate", "inputData": []}, r"config\.aggregations"),
        (
            {
                "transformation": "aggregate",
                "inputData": [],
                "aggregations": {"t": {"op": "median", "field": "p"}},
            },
            r"config\.aggregations\.t\.op",
        ),
        (
            {"transformation": "aggregate", "inputData": [], "aggregations": {"t": {"op": "sum"}}},
            r"config\.aggregations\.t\.field",
        ),
        (
            {"transformation": "aggregate", "inputData": [], "aggregations": {"t": "sum"}},
            r"config\.aggregations\.t",
        ),
        (
            {
                "transformation": "aggregate",
                "inputData": [{"p": "lots"}],
                "aggregations": {"t": {"op": "sum", "field": "p"}},
            },
            "'p' of item 0",
        ),
    ],
)
async def test_bad_config_is_permanent(
    make_ctx: MakeCtx, config: dict[str, Any], match: str
) -> None:
    with pytest.raises(PermanentStepError, match=match):
        await run_step(TransformStep(), make_ctx("transform", config))
