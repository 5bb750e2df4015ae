// End-to-end tests of the TypeScript client against a live Python server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  Code,
  EventType,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  SluiceError,
  WorkflowClient,
  WorkflowStatus,
  type WorkflowEvent,
} from "../src/index.js";
import { ServerProcess } from "./support/server.js";

const PARAMS = { topic: "Spring Market Update", platform: "facebook" };
const TERMINAL = new Set([
  EventType.WORKFLOW_COMPLETED,
  EventType.WORKFLOW_FAILED,
  EventType.WORKFLOW_CANCELLED,
]);

let server: ServerProcess;
let client: WorkflowClient;

before(async () => {
  server = await new ServerProcess().start();
  // The token is sent on every call; the server does not check it yet.
  client = new WorkflowClient({ baseUrl: server.baseUrl, token: "test-token" });
});

after(async () => {
  client?.close();
  if (server === undefined) return; // it did not start: before() reported why
  const code = await server.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${server.log}`);
});

async function collect(events: AsyncIterable<WorkflowEvent>): Promise<WorkflowEvent[]> {
  const seen: WorkflowEvent[] = [];
  for await (const event of events) {
    seen.push(event);
  }
  return seen;
}

function sequences(events: WorkflowEvent[]): number[] {
  return events.map((event) => Number(event.sequence));
}

describe("a full run of content-to-social", () => {
  let runId = "";
  let events: WorkflowEvent[] = [];

  test("create, execute with autoApprove, watch to the end", async () => {
    const created = await client.createWorkflow("content-to-social", PARAMS);
    assert.equal(created.status, WorkflowStatus.PENDING);
    assert.equal(created.templateId, "content-to-social");
    assert.deepEqual(created.params?.["topic"], "Spring Market Update");
    runId = created.id;

    const started = await client.executeWorkflow(runId, { autoApprove: true });
    assert.ok(started.options?.autoApprove);

    events = await collect(client.watch(runId));
    assert.ok(events.length > 0);
    assert.deepEqual(
      sequences(events),
      events.map((_, i) => i + 1),
      "events are numbered 1..n with no gap",
    );
    assert.ok(events.every((event) => event.workflowId === runId));
    assert.equal(events[0]!.type, EventType.WORKFLOW_CREATED);
    assert.equal(events.at(-1)!.type, EventType.WORKFLOW_COMPLETED);
    assert.equal(events.filter((event) => TERMINAL.has(event.type)).length, 1);
    const completedSteps = events
      .filter((event) => event.type === EventType.STEP_COMPLETED)
      .map((event) => event.stepId);
    assert.equal(completedSteps.length, 5);

    const run = await client.getWorkflow(runId);
    assert.equal(run.status, WorkflowStatus.COMPLETED);
    assert.equal(run.metrics?.completedSteps, 5);
    assert.equal(run.metrics?.totalSteps, 5);
    assert.equal(run.lastSequence, events.at(-1)!.sequence);
  });

  test("watch with afterSequence returns exactly the rest", async () => {
    assert.ok(events.length > 3, "the previous test ran");
    const cut = Math.floor(events.length / 2);
    const rest = await collect(client.watch(runId, { afterSequence: events[cut - 1]!.sequence }));
    assert.deepEqual(sequences(rest), sequences(events.slice(cut)));
    assert.deepEqual(
      rest.map((event) => [event.type, event.stepId, event.gateId]),
      events.slice(cut).map((event) => [event.type, event.stepId, event.gateId]),
    );
    // Resuming from the last event of a finished run yields nothing and ends.
    assert.deepEqual(await collect(client.watch(runId, { afterSequence: events.length })), []);
  });

  test("listWorkflows finds the run by status and template", async () => {
    const page = await client.listWorkflows({
      statuses: [WorkflowStatus.COMPLETED],
      templateId: "content-to-social",
    });
    assert.ok(page.workflows.some((run) => run.id === runId));
    assert.ok(page.workflows.every((run) => run.status === WorkflowStatus.COMPLETED));
  });
});

test("an approval gate pauses the run until approveGate", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  await client.executeWorkflow(run.id);
  let paused: WorkflowEvent | undefined;
  for await (const event of client.watch(run.id)) {
    if (event.type === EventType.WORKFLOW_PAUSED) {
      paused = event;
      break; // closes the stream
    }
  }
  assert.equal(paused?.gateId, "publish-approval");
  const waiting = await client.getWorkflow(run.id);
  assert.equal(waiting.status, WorkflowStatus.PAUSED);
  assert.equal(waiting.pausedGateId, "publish-approval");

  const done = await client.approveGate(run.id, "publish-approval", {
    comment: "looks good",
    wait: true,
  });
  assert.equal(done.status, WorkflowStatus.COMPLETED);
  assert.equal(done.metrics?.completedSteps, 5);
});

test("a followed watch ends quietly when its signal aborts", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  const controller = new AbortController();
  const seen: WorkflowEvent[] = [];
  for await (const event of client.watch(run.id, { follow: true, signal: controller.signal })) {
    seen.push(event);
    controller.abort(); // the run is PENDING: no further event would come
  }
  assert.deepEqual(sequences(seen), [1]);
  const cancelled = await client.cancelWorkflow(run.id, "not needed");
  assert.equal(cancelled.status, WorkflowStatus.CANCELLED);
});

test("the token goes out as authorization metadata on every call", async () => {
  const seen: (string | null)[] = [];
  const probe = new WorkflowClient({
    baseUrl: server.baseUrl,
    token: "secret-1",
    headers: { "x-request-source": "ts-test" },
    interceptors: [
      (next) => (req) => {
        seen.push(req.header.get("authorization"), req.header.get("x-request-source"));
        return next(req);
      },
    ],
  });
  try {
    await probe.listTemplates();
    const run = await probe.createWorkflow("content-to-social", PARAMS);
    for await (const event of probe.watch(run.id)) {
      assert.equal(event.type, EventType.WORKFLOW_CREATED);
      break; // the run is PENDING: nothing more would come
    }
    await probe.cancelWorkflow(run.id);
  } finally {
    probe.close();
  }
  assert.equal(seen.length, 8, "listTemplates, createWorkflow, watch, cancelWorkflow");
  for (let i = 0; i < seen.length; i += 2) {
    assert.equal(seen[i], "Bearer secret-1");
    assert.equal(seen[i + 1], "ts-test");
  }
});

test("templates: list, get, validate", async () => {
  const templates = await client.listTemplates();
  const ids = templates.map((template) => template.id);
  for (const id of ["content-to-social", "listing-campaign", "market-analysis-report"]) {
    assert.ok(ids.includes(id), `${id} in ${ids.join(", ")}`);
  }
  const template = await client.getTemplate("content-to-social");
  assert.equal(template.steps.length, 5);
  assert.ok(template.predefined);

  const result = await client.validateTemplate({
    id: "broken",
    name: "Broken",
    steps: [{ id: "a", type: "generate", dependencies: ["missing"] }],
  });
  assert.equal(result.valid, false);
  assert.ok(result.violations.some((v) => v.field.startsWith("steps[0].dependencies")));
});

test("INVALID_ARGUMENT carries every field violation", async () => {
  const error = await client
    .createWorkflow("content-to-social", { platfrom: "x" })
    .then(() => assert.fail("createWorkflow succeeded"), (e: unknown) => e);
  assert.ok(error instanceof InvalidArgumentError, String(error));
  assert.ok(error instanceof SluiceError);
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(error.codeName, "INVALID_ARGUMENT");
  const fields = error.violations.map((v) => v.field).sort();
  assert.deepEqual(fields, ["params.platfrom", "params.topic"]);
  assert.ok(error.violations.every((v) => v.description.length > 0));
  assert.ok(error.message.length > 0 && !error.message.startsWith("[invalid_argument]"));
});

test("NOT_FOUND for an unknown run", async () => {
  await assert.rejects(client.getWorkflow("00000000-0000-4000-8000-000000000000"), (error) => {
    assert.ok(error instanceof NotFoundError, String(error));
    assert.equal(error.code, Code.NotFound);
    assert.deepEqual(error.violations, []);
    return true;
  });
});

test("FAILED_PRECONDITION when pausing a PENDING run", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  await assert.rejects(client.pauseWorkflow(run.id, "too early"), (error) => {
    assert.ok(error instanceof FailedPreconditionError, String(error));
    assert.equal(error.code, Code.FailedPrecondition);
    return true;
  });
  assert.equal((await client.getWorkflow(run.id)).status, WorkflowStatus.PENDING);
});
