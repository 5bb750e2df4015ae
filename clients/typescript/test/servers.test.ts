// Several servers: calls go round-robin over those that answer, a dead URL is skipped, and a
// server that stops is left out. The two servers have databases of their own and a template
// only A has, so each answer says which server gave it.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import { NotFoundError, UnavailableError, WorkflowClient } from "../src/index.js";
import { ServerProcess } from "./support/server.js";

let a: ServerProcess;
let b: ServerProcess;
let dead = "";

/** A URL where nothing listens: a port the kernel gave and was handed back. */
async function unusedUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, "127.0.0.1", done));
  const address = probe.address();
  await new Promise<void>((done) => probe.close(() => done()));
  assert.ok(address !== null && typeof address === "object");
  return `http://127.0.0.1:${address.port}`;
}

before(async () => {
  [a, b] = await Promise.all([new ServerProcess().start(), new ServerProcess().start()]);
  dead = await unusedUrl();
  const onlyA = new WorkflowClient({ baseUrl: a.baseUrl });
  try {
    await onlyA.createTemplate({
      id: "only-on-a",
      name: "A",
      steps: [{ id: "write", type: "generate", config: { contentType: "blog-post", topic: "t" } }],
    });
  } finally {
    onlyA.close();
  }
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

async function answeredBy(client: WorkflowClient): Promise<"A" | "B"> {
  try {
    await client.getTemplate("only-on-a", { timeoutMs: 5_000 });
    return "A";
  } catch (error) {
    if (error instanceof NotFoundError) return "B";
    throw error;
  }
}

/** Calls until both servers have answered, then counts who answers `calls` more. */
async function spread(client: WorkflowClient, calls: number): Promise<Record<"A" | "B", number>> {
  const seen = new Set<string>();
  while (seen.size < 2) seen.add(await answeredBy(client)); // bounded by the test's timeout
  const counts = { A: 0, B: 0 };
  for (let i = 0; i < calls; i++) counts[await answeredBy(client)] += 1;
  return counts;
}

const ROUND_ROBIN = "calls go round-robin over an array of URLs, a dead one first";

test(ROUND_ROBIN, { timeout: 20_000 }, async () => {
  const client = new WorkflowClient({ baseUrl: [dead, a.baseUrl, b.baseUrl] });
  try {
    const counts = await spread(client, 20);
    assert.ok(Math.abs(counts.A - counts.B) <= 2, JSON.stringify(counts));
  } finally {
    client.close();
  }
});

test("a string with commas is several URLs", { timeout: 20_000 }, async () => {
  const client = new WorkflowClient({ baseUrl: `${a.baseUrl}, ${b.baseUrl}` });
  try {
    const counts = await spread(client, 10);
    assert.ok(counts.A > 0 && counts.B > 0, JSON.stringify(counts));
  } finally {
    client.close();
  }
});

test("no server answering is an UnavailableError naming each", { timeout: 20_000 }, async () => {
  const other = await unusedUrl();
  const client = new WorkflowClient({ baseUrl: [dead, other] });
  try {
    await assert.rejects(client.listTemplates({ timeoutMs: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof UnavailableError);
      assert.match(error.message, /no server answers/);
      assert.ok(error.message.includes(dead) && error.message.includes(other), error.message);
      return true;
    });
  } finally {
    client.close();
  }
});

test("a server that stops is left out; the others go on", { timeout: 30_000 }, async () => {
  const client = new WorkflowClient({ baseUrl: [a.baseUrl, b.baseUrl] });
  try {
    await spread(client, 2); // both connected
    assert.equal(await a.stop(), 0);
    const after: string[] = [];
    for (let i = 0; i < 10; i++) after.push(await answeredBy(client));
    assert.deepEqual(after, Array(10).fill("B"));
  } finally {
    client.close();
  }
});
