// End-to-end tests of the TypeScript client's schedule verbs against a live Python server.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  InvalidArgumentError,
  NotFoundError,
  OverlapPolicy,
  ScheduleFireStatus,
  WorkflowClient,
} from "../src/index.js";
import { ServerProcess } from "./support/server.js";

const PARAMS = { topic: "Spring Market Update", platform: "facebook" };

let server: ServerProcess;
let client: WorkflowClient;

before(async () => {
  server = await new ServerProcess().start();
  client = new WorkflowClient({ baseUrl: server.baseUrl });
});

after(async () => {
  client?.close();
  if (server === undefined) return;
  const code = await server.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${server.log}`);
});

test("a schedule is created, listed, updated, paused, resumed, triggered and deleted", async () => {
  const created = await client.createSchedule("ts-nightly", "content-to-social", "30 2 * * *", {
    timeZone: "Europe/Berlin",
    params: PARAMS,
    overlap: OverlapPolicy.ALLOW,
    catchupWindowMs: 600_000,
    autoApprove: true,
  });
  assert.equal(created.timeZone, "Europe/Berlin");
  assert.equal(created.overlapPolicy, OverlapPolicy.ALLOW);
  assert.equal(created.catchupWindow?.seconds, 600n);
  assert.ok(created.nextFireTime !== undefined);
  assert.deepEqual(
    (await client.listSchedules()).map((s) => s.scheduleId),
    ["ts-nightly"],
  );

  const updated = await client.updateSchedule("ts-nightly", {
    cron: "0 3 * * *",
    notifyOnCompletion: true,
  });
  assert.equal(updated.cron, "0 3 * * *");
  assert.equal(updated.timeZone, "Europe/Berlin"); // not given: kept
  assert.equal(updated.options?.autoApprove, true); // kept beside the one given
  assert.equal(updated.options?.notifyOnCompletion, true);

  const paused = await client.pauseSchedule("ts-nightly", "holidays");
  assert.equal(paused.paused, true);
  assert.equal(paused.pauseReason, "holidays");
  assert.equal(paused.nextFireTime, undefined);
  const resumed = await client.resumeSchedule("ts-nightly");
  assert.equal(resumed.paused, false);
  assert.ok(resumed.nextFireTime !== undefined);

  const fire = await client.triggerSchedule("ts-nightly");
  assert.equal(fire.status, ScheduleFireStatus.STARTED);
  assert.equal(fire.triggered, true);
  const run = await client.getWorkflow(fire.workflowId);
  assert.equal(run.templateId, "content-to-social");
  const shown = await client.getSchedule("ts-nightly");
  assert.equal(shown.lastWorkflowId, fire.workflowId);
  assert.equal(shown.recentFires[0]?.workflowId, fire.workflowId);

  await client.deleteSchedule("ts-nightly");
  await assert.rejects(client.getSchedule("ts-nightly"), NotFoundError);
});

test("a bad schedule is refused with every field violation", async () => {
  const refused = client.createSchedule("ts-bad", "content-to-social", "61 * * * *", {
    timeZone: "Nowhere/City",
    params: PARAMS,
  });
  await assert.rejects(refused, (error: unknown) => {
    assert.ok(error instanceof InvalidArgumentError);
    assert.deepEqual(error.violations.map((v) => v.field).sort(), [
      "schedule.cron",
      "schedule.time_zone",
    ]);
    return true;
  });
});
