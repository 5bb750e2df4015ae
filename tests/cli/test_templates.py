"""`sluice template create|validate|show|delete` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Sluice
from tests.support.templates import step, template


async def test_validate_prints_every_problem_and_exits_2_or_0(
    sluice: Sluice, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps(template("mine", step("a", "teleport"), step("b", "sleep", "ghost")))
    )
    good = tmp_path / "good.json"
    good.write_text(json.dumps(template("mine", step("a"))))

    invalid = await sluice("template", "validate", str(broken))
    assert invalid.code == 2, invalid.err
    assert invalid.lines[0] == f"{broken}: 2 problems"
    assert any(line.startswith("  steps[0].type: ") for line in invalid.lines)
    assert any(line.startswith("  steps[1].dependencies[0]: ") for line in invalid.lines)

    valid = await sluice("template", "validate", str(good))
    assert (valid.code, valid.out) == (0, f"{good}: valid\n")
    as_json = await sluice("template", "validate", str(good), "--json")
    assert json.loads(as_json.out) == {"valid": True}


async def test_create_show_and_delete_a_registered_template(sluice: Sluice, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    body = template("mine", step("a"), params=[{"name": "count", "defaultValue": 3}])
    path.write_text(json.dumps(body))

    created = await sluice("template", "create", str(path))
    assert (created.code, created.out) == (0, "registered template mine version 1\n")
    again = await sluice("template", "create", str(path), "--json")
    assert json.loads(again.out)["version"] == 2

    shown = await sluice("template", "show", "mine")
    assert shown.code == 0, shown.err
    [param] = [line.split() for line in shown.lines if line.split()[:1] == ["count"]]
    assert param == ["count", "3"], "an integral default prints as an integer, not 3.0"

    one = await sluice("template", "delete", "mine", "--version", "1")
    assert one.out == "deleted version 1 of template mine\n"
    rest = await sluice("template", "delete", "mine")
    assert rest.out == "deleted 1 version of template mine\n"
    assert (await sluice("template", "show", "mine")).code == 3

    predefined = await sluice("template", "delete", "content-to-social")
    assert predefined.code == 4, predefined.err

    path.write_text(json.dumps(template("mine", step("a", "teleport"))))
    refused = await sluice("template", "create", str(path))
    assert refused.code == 2 and "template.steps[0].type: " in refused.err


async def test_show_gives_each_gates_condition_and_action(sluice: Sluice) -> None:
    social = await sluice("template", "show", "content-to-social")
    rows = {line.split()[0]: line for line in social.lines if line.split()}
    assert rows["quality-check"].split()[2:] == ["threshold", "qualityScore", ">=", "0.7", "pause"]
    assert rows["publish-approval"].split()[2] == "approval"
    assert "waits for `sluice approve`" in rows["publish-approval"]
    # Steps show their condition and join rule.
    assert rows["wait-for-slot"].rstrip().endswith("params.waitForSlot == true")
    assert rows["post-content"].rstrip().endswith("any dependency completed")

    listing = await sluice("template", "show", "listing-campaign")
    [fair] = [line for line in listing.lines if line.startswith(" fair-housing ")]
    assert 'output.issues.filter(i, i.check == "compliance").size() == 0' in fair
    assert fair.split()[-1] == "abort"


async def test_validate_says_how_to_spell_an_enum_value(sluice: Sluice, tmp_path: Path) -> None:
    path = tmp_path / "short.json"
    path.write_text(
        json.dumps(
            template(
                "short", step("a", "generate", config={"contentType": "email"}),
                gates=[{"id": "ok", "stepId": "a", "action": "ABORT",
                        "threshold": {"metric": "wordCount", "threshold": 1,
                                      "operator": "COMPARISON_OPERATOR_GTE"}}],
            )
        )
    )  # fmt: skip
    result = await sluice("template", "validate", str(path))
    assert result.code == 2
    assert "qualityGates[0].action: ABORT is not a GateAction value; write GATE_ACTION_ABORT" in (
        result.err
    )


async def test_show_names_the_task_type_of_a_step_served_by_workers(
    sluice: Sluice, tmp_path: Path
) -> None:
    path = tmp_path / "remote.json"
    served = step("resize", "task", taskType="images.resize")
    path.write_text(json.dumps(template("remote", served, step("after", "sleep", "resize"))))
    assert (await sluice("template", "create", str(path))).code == 0

    shown = await sluice("template", "show", "remote")
    assert shown.code == 0, shown.err
    [row] = [line.split() for line in shown.lines if line.split()[:1] == ["resize"]]
    assert row[1:3] == ["task", "images.resize"]
