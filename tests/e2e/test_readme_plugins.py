"""The README's Step types and Plugins sections hold what the code does: its config tables are
the built-in schemas, and its example plugin is examples/redact.py, which runs in a server
started as the README says."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from sluice.client import WorkflowClient, WorkflowStatus
from sluice.steps import BUILTIN_STEP_TYPES, builtin_registry
from tests.support.process import serving_address
from tests.support.step_docs import config_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = README.split("### Example: a `redact` step type", 1)[1]


def fenced(text: str, language: str) -> str:
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_config_tables_are_the_schemas() -> None:
    registry = builtin_registry()
    for step_type in BUILTIN_STEP_TYPES:
        schema = registry.config_schema(step_type)
        assert schema is not None
        table = config_table(step_type, schema)
        assert table in README, f"README.md's table for {step_type} should read:\n\n{table}\n"


def test_the_example_plugin_is_examples_redact_py() -> None:
    assert fenced(EXAMPLE, "python") == (ROOT / "examples" / "redact.py").read_text()


async def test_the_example_plugin_runs_in_a_server_started_as_documented(tmp_path: Path) -> None:
    command = re.search(r"^PYTHONPATH=(\S+) \.venv/bin/sluice serve (.+)$", README, re.M)
    assert command is not None
    path, arguments = command.groups()
    env = {**os.environ, "PYTHONPATH": str(ROOT / path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "serve", *arguments.split(),
        "--listen", "127.0.0.1:0",
        "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        address = await serving_address(process.stderr)

        template = json.loads(fenced(EXAMPLE, "json"))
        async with WorkflowClient(address) as client:
            run = await client.create_workflow(template)
            done = await client.execute_workflow(run.id, wait=True, timeout=20)
            assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
            clean = next(s for s in done.steps if s.step_id == "clean")
            assert clean.output["content"] == "Call Ann on [redacted]."
            assert clean.output["redactions"] == 1

            # The plugin's schema and check_config apply at validation like the built-ins'.
            template["steps"][1]["config"] = {"terms": ["redacted"], "maks": "x"}
            report = await client.validate_template(template)
            assert {(v.field, v.description) for v in report.violations} == {
                (
                    "steps[1].config.maks",
                    "is not a known key; did you mean 'mask'? Known keys: mask, terms.",
                ),
                ("steps[1].config.terms[0]", "appears in the mask '[redacted]'"),
            }
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
