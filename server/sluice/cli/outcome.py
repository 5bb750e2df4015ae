"""Exit codes scripts rely on, and turning failures into them (one line on stderr, no traceback)."""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import typer

from sluice.client import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    SluiceError,
    UnauthenticatedError,
    UnavailableError,
    WorkflowStatus,
)
from sluice.client.tls_probe import ServerSpeaksTlsError


class ExitCode(enum.IntEnum):
    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    FAILED_PRECONDITION = 4
    ERROR = 5
    PAUSED = 6
    INTERRUPTED = 130


# Shown under every command's help; typer's rich help joins single newlines, so one paragraph.
EXIT_CODES_HELP = (
    "Exit codes: 0 success (for run and watch: the run COMPLETED); 1 the run FAILED or was "
    "CANCELLED; 2 invalid usage or argument; 3 not found; 4 not allowed in the run's current "
    "status; 5 server unavailable, unauthenticated or another error; 6 the run is PAUSED, "
    "waiting on a gate or a resume."
)


class InputError(Exception):
    """A bad argument found on our side, before any call (exit 2)."""


def exit_code_for_status(status: WorkflowStatus.ValueType) -> ExitCode:
    """The exit code of a command that waited for a run to rest."""
    if status in (WorkflowStatus.WORKFLOW_STATUS_FAILED, WorkflowStatus.WORKFLOW_STATUS_CANCELLED):
        return ExitCode.RUN_FAILED
    if status == WorkflowStatus.WORKFLOW_STATUS_PAUSED:
        return ExitCode.PAUSED
    return ExitCode.OK


def exit_code_for_error(error: SluiceError) -> ExitCode:
    match error:
        case InvalidArgumentError():
            return ExitCode.USAGE
        case NotFoundError():
            return ExitCode.NOT_FOUND
        case FailedPreconditionError():
            return ExitCode.FAILED_PRECONDITION
        case _:
            return ExitCode.ERROR


def describe_error(error: SluiceError, address: str) -> list[str]:
    """The lines to print: one sentence, then one line per field violation."""
    message = " ".join(error.message.split())  # gRPC details can span lines
    match error:
        case InvalidArgumentError() if error.violations:
            count = len(error.violations)
            head = f"invalid argument ({count} field violation{'' if count == 1 else 's'}):"
        case InvalidArgumentError():
            head = f"invalid argument: {message}"
        case NotFoundError():
            head = f"not found: {message}"
        case FailedPreconditionError():
            head = f"not allowed now: {message}"
        case ServerSpeaksTlsError():
            head = message
        case UnavailableError() | DeadlineExceededError():
            head = f"cannot reach the Sluice server at {address}: {message}"
        case UnauthenticatedError() | PermissionDeniedError():
            head = f"not authorized ({error.code.name}): {message}; check --token / SLUICE_TOKEN"
        case _:
            head = f"{error.code.name}: {message}"
    return [f"error: {head}", *(f"  {v.field}: {v.description}" for v in error.violations)]


def run_command(command: Coroutine[Any, Any, ExitCode], *, address: str) -> NoReturn:
    """Run a command's coroutine and exit with its code; every failure becomes a code too."""
    try:
        code = asyncio.run(command)
    except SluiceError as error:
        _print_error(*describe_error(error, address))
        code = exit_code_for_error(error)
    except InputError as error:
        _print_error(f"error: {error}")
        code = ExitCode.USAGE
    except BrokenPipeError:
        # The reader went away (`| head`): not a failure of ours, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    except KeyboardInterrupt:
        _print_error("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as error:
        # A CLI used by scripts must not dump a traceback at them; SLUICE_DEBUG brings it back.
        if os.environ.get("SLUICE_DEBUG"):
            raise
        _print_error(f"error: unexpected {type(error).__name__}: {error}")
        code = ExitCode.ERROR
    raise typer.Exit(int(code))


def _print_error(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)
