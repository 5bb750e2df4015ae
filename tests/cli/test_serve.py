"""`sluice serve`: the server's settings as CLI options, from config's one table."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from sluice import config
from sluice.client import WorkflowClient
from tests.cli.conftest import run_cli
from tests.support.process import serving_address


def _plain(help_text: str) -> str:
    """Rich's help without its box, one space between words."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", help_text).split())


async def test_serve_help_shows_every_setting_with_its_variable_and_default() -> None:
    result = await run_cli("serve", "--help", address="unused:1", env={"COLUMNS": "200"})

    assert result.code == 0, result.err
    text = _plain(result.out)
    assert "Usage: python -m sluice.cli serve [OPTIONS]" in text
    assert "--listen <str> host:port to serve gRPC on (:0 picks a free port) [env var: SLUICE_LISTEN] [default: 127.0.0.1:50051]" in text  # fmt: skip
    assert "[env var: SLUICE_DEFAULT_STEP_TIMEOUT_SECONDS] [default: 300]" in text
    for option in config.option_help():
        assert option.env in text
        if option.flag is not None:
            assert f"{option.flag} <" in text
    assert "SLUICE_AUTH_JWT_SECRET (or a file named by SLUICE_AUTH_JWT_SECRET_FILE)" in text


async def test_serve_takes_flags_and_variables_and_refuses_bad_ones(tmp_path: Path) -> None:
    bad = await run_cli("serve", address="unused:1", env={"SLUICE_MAX_WATCHERS_PER_RUN": "0"})
    assert bad.code == 2
    assert bad.err == (
        "error: SLUICE_MAX_WATCHERS_PER_RUN / --max-watchers-per-run: '0' is not a valid value: "
        "concurrent WatchWorkflow streams on one run\n"
    )
    exposed = await run_cli("serve", "--listen", "0.0.0.0:1", address="unused:1")
    assert exposed.code == 2 and "refusing to listen on 0.0.0.0:1" in exposed.err

    database = tmp_path / "from-flag.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_MAX_ACTIVE_RUNS_PER_USER"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "serve",
        "--listen", "127.0.0.1:0", "--database-url", f"sqlite+aiosqlite:///{database}",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        address = await serving_address(process.stderr)
        async with WorkflowClient(address) as client:
            await client.create_workflow("content-to-social", {"topic": "A"})
            refused = await run_cli(
                "run", "content-to-social", "-p", "topic=B", "--detach", address=address
            )
        assert refused.code == 5 and "RESOURCE_EXHAUSTED" in refused.err, "the variable applied"
        assert database.exists(), "the flag applied"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_readme_configuration_table_has_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `SLUICE_")]
    for option in config.option_help():
        row = next((r for r in rows if f"`{option.env}`" in r.split("|")[1]), None)
        assert row is not None, f"README's Configuration table has no row for {option.env}"
        if option.flag is not None:
            assert f"`{option.flag}`" in row.split("|")[2], f"{option.env}: flag {option.flag}"
