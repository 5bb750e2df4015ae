// A watch with `reconnect` goes on across its server's death: kill -9 mid-run, the server
// started again on the same database and port, and the stream reopens from the last event it
// delivered: every event once, in order, to the end. And a server that stops answering
// without closing the connection (SIGSTOP) is noticed by the keepalive pings.

import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";

import { EventType, WorkflowClient, type SluiceError, type WorkflowEvent } from "../src/index.js";
import { ServerProcess } from "./support/server.js";

test("a watch with reconnect survives its server's kill and restart", { timeout: 90_000 }, async () => {
  const server = new ServerProcess({ SLUICE_PLUGINS: "tests.support.plugin:register" });
  server.setting("SLUICE_TEST_LEDGER", join(server.dir, "ledger.jsonl"));
  await server.start();
  const client = new WorkflowClient({ baseUrl: server.baseUrl });
  try {
    const run = await client.createWorkflow({
      id: "slow",
      name: "slow",
      steps: [
        { id: "a", type: "work", config: { seconds: 0.05 } },
        { id: "b", type: "work", dependencies: ["a"], config: { seconds: 2 } },
        { id: "c", type: "work", dependencies: ["b"], config: { seconds: 0.05 } },
      ],
    });
    await client.executeWorkflow(run.id);
    const breaks: SluiceError[] = [];
    const seen: WorkflowEvent[] = [];
    let killed = false;
    const events = client.watch(run.id, {
      reconnect: true,
      onReconnect: (error) => breaks.push(error),
    });
    for await (const event of events) {
      seen.push(event);
      if (!killed && event.type === EventType.STEP_STARTED && event.stepId === "b") {
        killed = true;
        await server.killAndStartAgain();
      }
    }

    assert.ok(killed, "the run reached step b");
    assert.ok(breaks.length > 0, "the stream broke when the server died");
    assert.deepEqual(
      seen.map((event) => Number(event.sequence)),
      seen.map((_, i) => i + 1),
      "every event once, in order",
    );
    assert.equal(seen.at(-1)?.type, EventType.WORKFLOW_COMPLETED);
    const b = seen.filter((e) => e.stepId === "b" && e.type === EventType.STEP_STARTED);
    assert.deepEqual(b.map((e) => e.attempt), [1, 2], "step b ran again after the restart");
  } finally {
    client.close();
    await server.stop();
  }
});

test("keepalive pings notice a server that stops answering", { timeout: 60_000 }, async () => {
  const server = new ServerProcess({ SLUICE_PLUGINS: "tests.support.plugin:register" });
  server.setting("SLUICE_TEST_LEDGER", join(server.dir, "ledger.jsonl"));
  await server.start();
  const client = new WorkflowClient({ baseUrl: server.baseUrl, keepaliveMs: 1_000 });
  try {
    const run = await client.createWorkflow({
      id: "slow",
      name: "slow",
      steps: [{ id: "a", type: "work", config: { seconds: 1 } }],
    });
    await client.executeWorkflow(run.id);
    const breaks: SluiceError[] = [];
    let noticed: () => void = () => {};
    const broken = new Promise<void>((done) => (noticed = done));
    const seen: WorkflowEvent[] = [];
    let paused = false;
    const events = client.watch(run.id, {
      reconnect: true,
      onReconnect: (error) => {
        breaks.push(error);
        noticed();
      },
    });
    for await (const event of events) {
      seen.push(event);
      if (!paused && event.type === EventType.STEP_STARTED) {
        paused = true;
        server.pause();
        // Pinged every second, answered within a second: noticed in about two; the server
        // answers again once the watch has noticed (else the test times out).
        void broken.then(() => server.unpause());
      }
    }

    assert.ok(breaks.length > 0);
    assert.deepEqual(
      seen.map((event) => Number(event.sequence)),
      seen.map((_, i) => i + 1),
    );
    assert.equal(seen.at(-1)?.type, EventType.WORKFLOW_COMPLETED);
  } finally {
    server.unpause();
    client.close();
    await server.stop();
  }
});
