"""Every caller sees only their own runs and templates; others' ids answer NOT_FOUND."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sluice.client import (
    GateStatus,
    NotFoundError,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.support.crypto import token
from tests.support.templates import approval_gate, step, template

MISSING = "00000000-0000-4000-8000-000000000000"


async def test_users_are_isolated_in_every_rpc(auth_server: SluiceServer) -> None:
    alice = WorkflowClient(auth_server.address, token=token("alice"))
    bob = WorkflowClient(auth_server.address, token=token("bob"))
    try:
        mine = template("alices-template", step("a", "generate", config={"contentType": "email"}),
                        step("b", "generate", "a", config={"contentType": "email"}),
                        gates=[approval_gate("ok", "a")])  # fmt: skip
        await alice.create_template(mine)
        run = await alice.create_workflow("alices-template")
        paused = await alice.execute_workflow(run.id, wait=True, timeout=10)
        assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED

        calls: dict[str, Callable[[WorkflowClient, str], Awaitable[Any]]] = {
            "get": lambda c, i: c.get_workflow(i),
            "execute": lambda c, i: c.execute_workflow(i),
            "pause": lambda c, i: c.pause_workflow(i),
            "resume": lambda c, i: c.resume_workflow(i),
            "cancel": lambda c, i: c.cancel_workflow(i),
            "approve": lambda c, i: c.approve_gate(i, "ok"),
            "watch": lambda c, i: _drain(c.watch(i)),
            "list events": lambda c, i: c.list_workflow_events(i),
        }
        for name, call in calls.items():
            with pytest.raises(NotFoundError) as theirs:
                await call(bob, run.id)
            with pytest.raises(NotFoundError) as nobodys:
                await call(bob, MISSING)
            # No existence oracle: the answer for Alice's run is the answer for no run.
            assert theirs.value.message.replace(run.id, "ID") == nobodys.value.message.replace(
                MISSING, "ID"
            ), name

        assert [w.id for w in (await bob.list_workflows()).workflows] == []
        assert [w.id for w in (await alice.list_workflows()).workflows] == [run.id]
        with pytest.raises(NotFoundError):
            await bob.get_template("alices-template")
        with pytest.raises(NotFoundError):
            await bob.create_workflow("alices-template")
        assert "alices-template" not in {t.id for t in await bob.list_templates()}
        # Predefined templates are everyone's.
        assert {"content-to-social", "listing-campaign", "market-analysis-report"} <= {
            t.id for t in await bob.list_templates()
        }
        # Bob may use the same template id for his own template: names are per owner.
        assert (await bob.create_template(mine)).version == 1

        # Nothing Bob did touched Alice's run.
        after = await alice.get_workflow(run.id)
        assert (after.status, after.last_sequence) == (paused.status, paused.last_sequence)
        done = await alice.approve_gate(run.id, "ok", wait=True, timeout=10)
        assert done.gate_results[0].status == GateStatus.GATE_STATUS_APPROVED
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    finally:
        await alice.close()
        await bob.close()


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
