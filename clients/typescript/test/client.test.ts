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
  StepStatus,
  WorkflowClient,
  WorkflowStatus,
  WorkflowView,
  type Workflow,
  type WorkflowEvent,
} from "../src/index.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
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
    // content-to-social's wait for the slot is skipped without waitForSlot.
    assert.equal(run.metrics?.totalSteps, 6);
    assert.equal(run.metrics?.skippedSteps, 1);
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

test("rerunWorkflow reuses what a cancelled run completed; retryStep refuses a step not waiting", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  await client.executeWorkflow(run.id);
  for await (const event of client.watch(run.id)) {
    if (event.type === EventType.WORKFLOW_PAUSED) break; // on publish-approval
  }
  await assert.rejects(client.retryStep(run.id, "post-content"), FailedPreconditionError);
  await assert.rejects(client.rerunWorkflow(run.id), FailedPreconditionError); // PAUSED
  await client.cancelWorkflow(run.id);
  await assert.rejects(
    client.rerunWorkflow(run.id, { fromStep: "no-such-step" }),
    (error: unknown) =>
      error instanceof InvalidArgumentError &&
      error.violations.some((v) => v.field === "from_step_id"),
  );

  const done = await client.rerunWorkflow(run.id, { autoApprove: true, wait: true });
  assert.equal(done.status, WorkflowStatus.COMPLETED);
  assert.equal(done.rerunOf, run.id);
  assert.deepEqual(done.reusedStepIds, ["generate-content", "review-content", "schedule-post"]);
  assert.deepEqual(
    done.steps.map((step) => step.attempt),
    [0, 0, 0, 0, 1, 1], // wait-for-slot is skipped again: no waitForSlot
  );
  const fromReview = await client.rerunWorkflow(run.id, { fromStep: "review-content" });
  assert.equal(fromReview.rerunFromStepId, "review-content");
  assert.deepEqual(fromReview.reusedStepIds, ["generate-content"]);
  await client.cancelWorkflow(fromReview.id);
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
  assert.equal(template.steps.length, 6);
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

/** A client that records the name of every method it calls. */
function recordingClient(methods: string[]): WorkflowClient {
  return new WorkflowClient({
    baseUrl: server.baseUrl,
    interceptors: [
      (next) => (req) => {
        methods.push(req.method.name);
        return next(req);
      },
    ],
  });
}

function timestampMs(time: Timestamp): number {
  return Number(time.seconds) * 1000 + time.nanos / 1e6;
}

async function completedRun(): Promise<Workflow> {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  const done = await client.executeWorkflow(run.id, { autoApprove: true, wait: true });
  assert.equal(done.status, WorkflowStatus.COMPLETED);
  return done;
}

test("resumeWorkflow changes one option in one call and the server keeps the other", async () => {
  const methods: string[] = [];
  const recording = recordingClient(methods);
  try {
    const run = await recording.createWorkflow("content-to-social", PARAMS);
    const paused = await recording.executeWorkflow(run.id, {
      notifyOnCompletion: true,
      wait: true,
    });
    assert.equal(paused.status, WorkflowStatus.PAUSED);
    methods.length = 0;
    const done = await recording.resumeWorkflow(run.id, { autoApprove: true, wait: true });
    assert.deepEqual(methods, ["ResumeWorkflow"], "no read of the run first");
    assert.equal(done.status, WorkflowStatus.COMPLETED);
    assert.equal(done.options?.autoApprove, true);
    assert.equal(done.options?.notifyOnCompletion, true, "kept, though not sent");
  } finally {
    recording.close();
  }
});

test("listWorkflows returns the BASIC view by default and FULL on request", async () => {
  const run = await completedRun();
  const find = async (view?: WorkflowView): Promise<Workflow> => {
    const page = await client.listWorkflows({
      templateId: "content-to-social",
      pageSize: 1000,
      ...(view === undefined ? {} : { view }),
    });
    const found = page.workflows.find((listed) => listed.id === run.id);
    assert.ok(found !== undefined, "the run is listed");
    return found;
  };
  for (const basic of [await find(), await find(WorkflowView.BASIC)]) {
    assert.equal(basic.status, WorkflowStatus.COMPLETED);
    assert.equal(basic.metrics?.completedSteps, 5);
    assert.equal(basic.template, undefined, "no template in the BASIC view");
    assert.equal(basic.steps.length, 6);
    assert.ok(basic.steps.every((step) => step.output === undefined), "no step outputs");
  }
  const full = await find(WorkflowView.FULL);
  assert.equal(full.template?.id, "content-to-social");
  // Every completed step has its output (the skipped wait for the slot has none).
  const completed = full.steps.filter((step) => step.status === StepStatus.COMPLETED);
  assert.equal(completed.length, 5);
  assert.ok(completed.every((step) => step.output !== undefined));
});

test("listWorkflows filters by create time: [createTimeStart, createTimeEnd)", async () => {
  const first = await client.createWorkflow("content-to-social", PARAMS);
  // The boundary: the first millisecond after the first run's creation (times are microseconds).
  const boundary = new Date(Math.floor(timestampMs(first.createTime!)) + 1);
  while (Date.now() <= boundary.getTime()) {
    await new Promise((resolve) => setImmediate(resolve)); // the clock passes it in a millisecond
  }
  const second = await client.createWorkflow("content-to-social", PARAMS);
  type Range = { createTimeStart?: Date; createTimeEnd?: Date };
  const ids = async (range: Range): Promise<string[]> => {
    const found: string[] = [];
    for await (const run of client.iterWorkflows({ templateId: "content-to-social", ...range })) {
      found.push(run.id);
    }
    return found;
  };
  const before = await ids({ createTimeEnd: boundary });
  assert.ok(before.includes(first.id) && !before.includes(second.id), "end is exclusive");
  const after = await ids({ createTimeStart: boundary });
  assert.deepEqual(after, [second.id], "start is inclusive; nothing else was created since");
  await assert.rejects(ids({ createTimeStart: boundary, createTimeEnd: boundary }), (error) => {
    assert.ok(error instanceof InvalidArgumentError, String(error));
    assert.deepEqual(
      error.violations.map((v) => v.field),
      ["create_time_end"],
    );
    return true;
  });
  for (const run of [first, second]) await client.cancelWorkflow(run.id);
});

test("deleteWorkflow removes a run that has ended, and only one that has", async () => {
  const done = await completedRun();
  await client.deleteWorkflow(done.id);
  await assert.rejects(client.getWorkflow(done.id), NotFoundError);
  await assert.rejects(client.deleteWorkflow(done.id), NotFoundError);

  const pending = await client.createWorkflow("content-to-social", PARAMS);
  await assert.rejects(client.deleteWorkflow(pending.id), FailedPreconditionError);
  assert.equal((await client.getWorkflow(pending.id)).status, WorkflowStatus.PENDING);
});

test("deleteTemplate removes one version or all of them; runs keep their copy", async () => {
  const template = {
    id: "ts-short-lived",
    name: "Short-lived",
    steps: [{ id: "write", type: "generate", config: { contentType: "blog-post", topic: "t" } }],
  };
  assert.equal((await client.createTemplate(template)).version, 1);
  assert.equal((await client.createTemplate({ ...template, name: "Second" })).version, 2);
  const run = await client.createWorkflow("ts-short-lived", {}, { version: 1 });

  assert.equal(await client.deleteTemplate("ts-short-lived", { version: 1 }), 1);
  await assert.rejects(client.getTemplate("ts-short-lived", { version: 1 }), NotFoundError);
  assert.equal((await client.getTemplate("ts-short-lived")).version, 2);
  assert.equal(await client.deleteTemplate("ts-short-lived"), 1, "every version that is left");
  await assert.rejects(client.getTemplate("ts-short-lived"), NotFoundError);

  const kept = await client.getWorkflow(run.id);
  assert.equal(kept.template?.id, "ts-short-lived");
  assert.equal(kept.template?.name, "Short-lived");
  await assert.rejects(client.deleteTemplate("content-to-social"), FailedPreconditionError);
  assert.ok((await client.listTemplates()).some((listed) => listed.id === "content-to-social"));
});

test("listWorkflowEvents pages through exactly the watched events, filtered", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  await client.executeWorkflow(run.id, { autoApprove: true, wait: true });
  const watched = await collect(client.watch(run.id));

  const paged: WorkflowEvent[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await client.listWorkflowEvents(run.id, { pageSize: 3, pageToken });
    assert.ok(page.events.length <= 3);
    paged.push(...page.events);
    pageToken = page.nextPageToken;
    pages += 1;
  } while (pageToken !== "");
  assert.deepEqual(paged, watched, "the same messages, sequence, type, time and details alike");
  assert.equal(pages, Math.ceil(watched.length / 3));

  const completed = await collect(
    client.iterWorkflowEvents(run.id, { types: [EventType.STEP_COMPLETED], pageSize: 2 }),
  );
  assert.deepEqual(
    completed,
    watched.filter((event) => event.type === EventType.STEP_COMPLETED),
  );
  const finished = await client.getWorkflow(run.id);
  assert.ok(completed.length > 0);
  assert.equal(completed.length, finished.metrics?.completedSteps);
  const later = await collect(
    client.iterWorkflowEvents(run.id, { stepIds: ["generate-content"], afterSequence: 3 }),
  );
  assert.deepEqual(
    later,
    watched.filter((event) => event.stepId === "generate-content" && event.sequence > 3n),
  );
  assert.ok(later.length > 0);

  await assert.rejects(client.listWorkflowEvents(run.id, { stepIds: ["nope"] }), (error) => {
    assert.ok(error instanceof InvalidArgumentError, String(error));
    assert.deepEqual(
      error.violations.map((v) => v.field),
      ["step_ids[0]"],
    );
    return true;
  });
  await assert.rejects(
    client.listWorkflowEvents("00000000-0000-4000-8000-000000000000"),
    NotFoundError,
  );
});

test("getAnalytics counts the runs that ended, and names a bad window's field", async () => {
  const run = await client.createWorkflow("content-to-social", PARAMS);
  await client.executeWorkflow(run.id, { autoApprove: true, wait: true });

  const figures = await client.getAnalytics({ templateId: "content-to-social" });
  const [template] = figures.templates;
  assert.equal(template?.templateId, "content-to-social");
  assert.ok((template?.completed ?? 0n) >= 1n);
  assert.ok((template?.duration?.count ?? 0n) >= 1n);
  const hours = Number(figures.endTime!.seconds - figures.startTime!.seconds) / 3600;
  assert.equal(hours, 24, "the default window: 24 whole hours");
  const review = await client.getAnalytics({ stepType: "review" });
  assert.deepEqual(
    review.stepTypes.map((s) => s.stepType),
    ["review"],
  );

  const now = new Date();
  await assert.rejects(
    client.getAnalytics({ startTime: now, endTime: new Date(now.getTime() - 3_600_000) }),
    (error) => {
      assert.ok(error instanceof InvalidArgumentError, String(error));
      assert.deepEqual(
        error.violations.map((v) => v.field),
        ["end_time"],
      );
      return true;
    },
  );
});
