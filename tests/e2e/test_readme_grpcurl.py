"""The README's "Debugging with grpcurl" block runs as written, so the docs cannot rot.

grpcurl itself is not installable here; every `buf curl` line runs, in order, in one bash
script against a live server, and each grpcurl line must ask for the same method with the
same JSON as the `buf curl` line that follows it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import pytest

from sluice.server import SluiceServer

ROOT = Path(__file__).resolve().parents[2]
MARK = "=== command "


def readme_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Debugging with grpcurl", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def _method_and_body(line: str) -> tuple[str, str | None]:
    words = shlex.split(line.replace("$ID", "ID").replace("$ADDR", "ADDR"))
    body = words[words.index("-d") + 1] if "-d" in words else None
    method = words[-1].rsplit("ADDR", 1)[-1].strip("/ ") or words[-1]
    return method, body


def test_every_grpcurl_line_has_its_buf_curl_twin() -> None:
    lines = readme_block()
    grpcurl = [i for i, line in enumerate(lines) if line.startswith("grpcurl ")]
    assert len(grpcurl) >= 6
    for i in grpcurl:
        twin = lines[i + 1]
        assert twin.startswith("buf curl "), lines[i]
        method, body = _method_and_body(lines[i])
        twin_method, twin_body = _method_and_body(twin)
        if " list " in lines[i] or " describe " in lines[i]:
            assert twin_method in ("--list-methods", "--list-services"), twin
        else:
            assert (method, body) == (twin_method, twin_body), lines[i]


@pytest.mark.skipif(not (ROOT / "node_modules/.bin/buf").exists(), reason="npm ci brings buf")
async def test_the_buf_curl_commands_work_as_written(server: SluiceServer) -> None:
    lines = readme_block()
    setup = [line for line in lines if re.match(r"^[A-Z]+=", line) and "buf curl" not in line]
    commands = [line for line in lines if "buf curl" in line]
    script = "\n".join(
        ["set -e", f"cd {shlex.quote(str(ROOT))}", *setup, f"ADDR={server.address}"]
        + [f"echo '{MARK}{i}'\n{command}" for i, command in enumerate(commands)]
    )
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    outputs = re.split(rf"^{MARK}\d+$", stdout.decode(), flags=re.M)[1:]
    assert len(outputs) == len(commands)
    by_kind = dict(zip(commands, outputs, strict=True))

    def output_of(fragment: str) -> str:
        return next(out for command, out in by_kind.items() if fragment in command)

    methods = output_of("--list-methods").split()
    assert len([m for m in methods if m.startswith("sluice.v1.WorkflowService/")]) == 15
    assert "sluice.v1.WorkflowService" in output_of("--list-services").split()
    created = json.loads(output_of("CreateWorkflow"))["workflow"]
    assert created["status"] == "WORKFLOW_STATUS_PENDING"
    assert output_of("ID=$(").strip() == ""
    executed = json.loads(output_of("ExecuteWorkflow"))["workflow"]
    assert executed["id"] == created["id"]
    assert (executed["status"], executed["pausedGateId"]) == (
        "WORKFLOW_STATUS_PAUSED",
        "publish-approval",
    )
    approved = json.loads(output_of("ApproveGate"))["workflow"]
    assert approved["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert approved["metrics"]["completedSteps"] == 5
    events = [json.loads(chunk)["event"] for chunk in _json_stream(output_of("WatchWorkflow"))]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"
    assert json.loads(output_of("Health/Check"))["status"] == "SERVING"


def _json_stream(text: str) -> list[str]:
    """buf curl prints one pretty-printed JSON object per streamed message."""
    decoder, chunks, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        obj, end = decoder.raw_decode(text, position)
        chunks.append(json.dumps(obj))
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return chunks
