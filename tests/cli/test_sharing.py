"""`sluice template export|import` against a real server: a template as a file people share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from sluice.cli.sharing import shareable
from sluice.client import WorkflowClient
from tests.cli.conftest import Sluice
from tests.support.templates import step, template

TEMPLATES = Path(__file__).resolve().parents[2] / "server" / "sluice" / "templates"
SHIPPED = sorted(p.stem for p in TEMPLATES.glob("*.json"))


def shipped(template_id: str) -> dict[str, Any]:
    """The shipped file as a server serves it: with the default maxBackoff written out."""
    body: dict[str, Any] = json.loads((TEMPLATES / f"{template_id}.json").read_text())
    for spec in body["steps"]:
        if "retry" in spec:
            spec["retry"].setdefault("maxBackoff", "300s")
    return body


@pytest.mark.parametrize("template_id", SHIPPED)
async def test_the_export_of_a_predefined_template_is_its_shipped_file(
    client: WorkflowClient, template_id: str
) -> None:
    # What the server serves, less the fields it sets, is what ships: nothing lost or added.
    served = await client.get_template(template_id)
    exported = json_format.MessageToDict(shareable(served))
    assert exported == shipped(template_id)


async def test_export_writes_camel_case_json_without_output_only_fields(sluice: Sluice) -> None:
    shown = await sluice("template", "export", "content-to-social")
    assert shown.code == 0, shown.err
    exported = json.loads(shown.out)
    assert exported == shipped("content-to-social")
    assert {"version", "predefined", "createTime"}.isdisjoint(exported)
    assert "qualityGates" in exported and "dependencyRule" in exported["steps"][4]


async def test_a_predefined_template_round_trips_under_a_new_id_and_runs(
    sluice: Sluice, client: WorkflowClient, tmp_path: Path
) -> None:
    path = tmp_path / "launch.json"
    exported = await sluice("template", "export", "new-listing-launch", "-o", str(path))
    assert exported.code == 0, exported.err
    assert exported.out == f"exported template new-listing-launch version 1 to {path}\n"

    # Its id is predefined here: the error says so and how to import it.
    refused = await sluice("template", "import", str(path))
    assert refused.code == 2
    assert refused.err == (
        "error: new-listing-launch is a predefined template; choose another id: pass it as "
        "--id NEW_ID\n"
    )

    imported = await sluice("template", "import", str(path), "--id", "my-launch")
    assert (imported.code, imported.out) == (0, "registered template my-launch version 1\n")
    mine = await client.get_template("my-launch")
    assert not mine.predefined
    original = await client.get_template("new-listing-launch")
    assert [s.id for s in mine.steps] == [s.id for s in original.steps]
    assert mine.quality_gates == original.quality_gates

    run = await sluice(
        "run", "my-launch", "-p", "listingId=l-9", "-p", "address=7 Pine St",
        "-p", "price=640000", "--auto-approve", "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    done = json.loads(run.out)
    assert done["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert done["templateId"] == "my-launch"


async def test_import_adds_a_version_and_export_takes_one(
    sluice: Sluice, client: WorkflowClient, tmp_path: Path
) -> None:
    first, second = tmp_path / "v1.json", tmp_path / "v2.json"
    first.write_text(json.dumps(template("shared", step("a"))))
    second.write_text(json.dumps(template("shared", step("a"), step("b", "sleep", "a"))))
    assert (await sluice("template", "import", str(first))).code == 0
    again = await sluice("template", "import", str(second), "--json")
    assert json.loads(again.out)["version"] == 2

    old = await sluice("template", "export", "shared", "--version", "1")
    assert old.code == 0, old.err
    assert [s["id"] for s in json.loads(old.out)["steps"]] == ["a"]

    # The JSON of `template show --json` carries version, predefined and createTime: import
    # ignores them and registers the next version.
    shown = await sluice("template", "show", "shared", "--json")
    assert json.loads(shown.out)["version"] == 2
    path = tmp_path / "shown.json"
    path.write_text(shown.out)
    third = await sluice("template", "import", str(path), "--id", "copied")
    assert (third.code, third.out) == (0, "registered template copied version 1\n")
    assert len((await client.get_template("copied")).steps) == 2


async def test_export_and_import_failures_exit_with_their_codes(
    sluice: Sluice, tmp_path: Path
) -> None:
    missing = await sluice("template", "export", "no-such-template")
    assert missing.code == 3 and missing.err.startswith("error: not found: ")

    unwritable = await sluice(
        "template", "export", "content-to-social", "-o", str(tmp_path / "no" / "x.json")
    )
    assert unwritable.code == 2
    assert unwritable.err.startswith(f"error: cannot write {tmp_path / 'no' / 'x.json'}: ")

    path = tmp_path / "broken.json"
    path.write_text(json.dumps(template("broken", step("a", "teleport"))))
    invalid = await sluice("template", "import", str(path), "--id", "Bad Id")
    assert invalid.code == 2
    assert "template.id: " in invalid.err and "template.steps[0].type: " in invalid.err
