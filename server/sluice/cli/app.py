"""The `sluice` command: one typer app, each command registered with the exit codes it shares."""

from __future__ import annotations

from collections.abc import Callable

import typer

from sluice.cli import (
    admin,
    analytics,
    control,
    credentials,
    events,
    rerun,
    runs,
    schedules,
    serve,
    sharing,
    templates,
)
from sluice.cli.outcome import EXIT_CODES_HELP

app = typer.Typer(
    help="Sluice: workflow automation over gRPC.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    # Failures are reported as one line and an exit code (outcome.py), never as a traceback.
    pretty_exceptions_enable=False,
)


def _register(target: typer.Typer, commands: dict[str, Callable[..., None]]) -> None:
    for name, command in commands.items():
        target.command(name, epilog=EXIT_CODES_HELP)(command)


template_app = typer.Typer(help="Register, check, show and delete templates.", no_args_is_help=True)
_register(
    template_app,
    {
        "create": templates.create_template,
        "validate": templates.validate_template,
        "show": templates.show_template,
        "delete": templates.delete_template,
    },
)
# Sharing templates as files (export from one server, import on another).
_register(template_app, {"export": sharing.export_template, "import": sharing.import_template})
app.add_typer(template_app, name="template")
_register(
    app,
    {
        "templates": templates.templates,
        "run": runs.run,
        "watch": runs.watch,
        "list": runs.list_runs,
        "show": runs.show,
        "delete": runs.delete,
        "approve": control.approve,
        "pause": control.pause,
        "resume": control.resume,
        "cancel": control.cancel,
        "graph": templates.graph,
    },
)
_register(app, {"events": events.events, "analytics": analytics.analytics})
schedule_app = typer.Typer(
    help="Runs of a template on a cron: create, list, get, update, pause, resume, trigger, delete.",
    no_args_is_help=True,
)
_register(
    schedule_app,
    {
        "create": schedules.create_schedule,
        "list": schedules.list_schedules,
        "get": schedules.get_schedule,
        "update": schedules.update_schedule,
        "pause": schedules.pause_schedule,
        "resume": schedules.resume_schedule,
        "trigger": schedules.trigger_schedule,
        "delete": schedules.delete_schedule,
    },
)
app.add_typer(schedule_app, name="schedule")
# Reruns: a new run from a failed one, and a retry without its backoff.
_register(app, {"rerun": rerun.rerun, "retry": rerun.retry})
app.command("serve", epilog=serve.environment_only_help())(serve.serve_command())
app.add_typer(admin.db, name="db")
app.command("token")(credentials.token)
app.command("cert")(credentials.cert)


def main() -> None:
    app()
