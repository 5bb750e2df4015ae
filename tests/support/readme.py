"""Running the README's shell blocks as written: each line in order in one bash script, with
what it printed (stdout and stderr together, as a terminal shows them) and its exit code."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_MARK = "=== command "
_EXIT = "=== exit "


@dataclass(frozen=True)
class Ran:
    command: str
    output: str
    code: int

    def json(self) -> Any:
        return json.loads(self.output)


def sh_blocks(heading: str) -> list[list[str]]:
    """The ```sh blocks after `heading` up to the next second-level heading, each without its
    comments and blank lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)
    return [[ln for ln in b.splitlines() if ln and not ln.startswith("#")] for b in blocks]


async def run_commands(
    commands: Sequence[str],
    *,
    setup: Sequence[str] = (),
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> list[Ran]:
    """Run `setup`, then each command (which may span lines: its last line's output counts)."""
    steps = [f"echo '{_MARK}{i}'\n{c} 2>&1\necho \"{_EXIT}$?\"" for i, c in enumerate(commands)]
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "\n".join([*setup, *steps]), cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = stdout.decode()
    chunks = re.split(rf"^{_MARK}\d+$", text, flags=re.M)[1:]
    assert len(chunks) == len(commands), text
    ran = []
    for command, chunk in zip(commands, chunks, strict=True):
        output, code = chunk.rsplit(_EXIT, 1)
        ran.append(Ran(command, output.strip(), int(code)))
    return ran
