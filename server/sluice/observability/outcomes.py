"""How step attempts and gates ended, by the event that ends them: one word each, the same in
the metrics' labels and the spans' attributes."""

from __future__ import annotations

from sluice.engine.model import EventType

ATTEMPT_OUTCOMES = {
    EventType.STEP_COMPLETED: "completed",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_RETRYING: "retrying",
    EventType.STEP_CANCELLED: "cancelled",
}
GATE_OUTCOMES = {
    EventType.GATE_PASSED: "passed",
    EventType.GATE_FAILED: "failed",
    EventType.GATE_APPROVED: "approved",
    EventType.GATE_REJECTED: "rejected",
    EventType.GATE_AWAITING_APPROVAL: "awaiting_approval",
}
