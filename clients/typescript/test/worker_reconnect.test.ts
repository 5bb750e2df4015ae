// A worker whose server dies (kill -9) and comes back on the same database and address: the
// handler running on the broken stream is aborted (the server hands such tasks back), and the
// worker opens its stream again and serves the next run.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Worker,
  WorkflowClient,
  WorkflowStatus,
  type LogFields,
  type TaskInfo,
} from "../src/index.js";
import { ServerProcess } from "./support/server.js";

test("a worker opens its stream again after its server's kill and restart", {
  timeout: 90_000,
}, async () => {
  const server = await new ServerProcess().start();
  const client = new WorkflowClient({ baseUrl: server.baseUrl });
  const opens: (() => void)[] = [];
  let streamsOpened = 0;
  const nextOpen = (): Promise<void> => new Promise((done) => opens.push(done));
  const broken: LogFields[] = [];
  let first: ((task: TaskInfo) => void) | undefined;
  const firstStarted = new Promise<TaskInfo>((done) => (first = done));
  const worker = new Worker({
    baseUrl: server.baseUrl,
    initialBackoffMs: 50,
    maxBackoffMs: 500,
    onStreamOpen: () => {
      streamsOpened += 1;
      opens.shift()?.();
    },
    logger: {
      debug: () => {},
      info: () => {},
      warn: (message, fields) => {
        if (/stream broke/.test(message)) broken.push(fields);
      },
      error: () => {},
    },
  });
  worker.register("ts-again", (task) => {
    if (task.params["hold"] === true) {
      first?.(task);
      return new Promise(() => {}); // runs until the stream breaks
    }
    return { ok: true };
  });
  const opened = nextOpen();
  const running = worker.run();
  try {
    await opened;
    const template = {
      id: "ts-again",
      name: "again",
      params: [{ name: "hold" }],
      steps: [{ id: "a", type: "task", taskType: "ts-again" }],
    };
    const held = await client.createWorkflow(template, { hold: true });
    await client.executeWorkflow(held.id);
    const task = await firstStarted;

    const reopened = nextOpen();
    await server.killAndStartAgain();
    await reopened;
    assert.ok(task.signal.aborted, "the handler on the broken stream was aborted");
    assert.match((task.signal.reason as Error).message, /the task stream broke/);
    assert.ok(broken.length > 0);
    assert.ok(streamsOpened >= 2);

    const run = await client.createWorkflow(template, { hold: false });
    const done = await client.executeWorkflow(run.id, { wait: true, timeoutMs: 30_000 });
    assert.equal(done.status, WorkflowStatus.COMPLETED, done.error);
    assert.deepEqual(done.steps[0]?.output, { ok: true });
  } finally {
    await worker.stop(1_000);
    await running;
    client.close();
    await server.stop();
  }
});
