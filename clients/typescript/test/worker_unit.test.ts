// The worker's pure parts, without a server: a Task message as a handler sees it, what a
// handler's value or error makes of the task, and the request queue behind the stream.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import { NonRetryableError, TaskError, TaskSchema, Worker } from "../src/index.js";
import { RequestQueue } from "../src/queue.js";
import {
  MAX_ERROR_CHARS,
  MAX_RETRY_AFTER_MS,
  errorText,
  outcomeOfError,
  outcomeOfValue,
  toTaskInfo,
} from "../src/task.js";

describe("toTaskInfo", () => {
  test("every field, as plain objects and Dates", () => {
    const deadline = new Date("2026-01-02T03:04:05.678Z");
    const queued = new Date("2026-01-02T03:00:00Z");
    const task = create(TaskSchema, {
      taskToken: "tok",
      taskType: "upper",
      workflowId: "wf-1",
      stepId: "shout",
      attempt: 2,
      idempotencyKey: "wf-1/shout",
      templateId: "tpl",
      config: { text: "hi", n: 3, nested: { ok: true } },
      params: { text: "hi" },
      inputs: { a: { x: 1 } },
      upstream: { a: { x: 1 }, b: { y: [1, "two"] } },
      deadline: timestampFromDate(deadline),
      queueTime: timestampFromDate(queued),
      retriesLeft: 1,
      traceContext: {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate: "vendor=x",
      },
    });
    const signal = new AbortController().signal;
    const info = toTaskInfo(task, signal);
    assert.deepEqual(
      { ...info, signal: undefined },
      {
        token: "tok",
        taskType: "upper",
        workflowId: "wf-1",
        stepId: "shout",
        attempt: 2,
        idempotencyKey: "wf-1/shout",
        templateId: "tpl",
        config: { text: "hi", n: 3, nested: { ok: true } },
        params: { text: "hi" },
        inputs: { a: { x: 1 } },
        upstream: { a: { x: 1 }, b: { y: [1, "two"] } },
        deadline,
        queueTime: queued,
        retriesLeft: 1,
        traceContext: {
          traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          tracestate: "vendor=x",
        },
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        signal: undefined,
      },
    );
    assert.equal(info.signal, signal);
  });

  test("unset Structs are empty objects, unset times undefined", () => {
    const info = toTaskInfo(create(TaskSchema, { taskToken: "t" }), new AbortController().signal);
    assert.deepEqual(info.config, {});
    assert.deepEqual(info.params, {});
    assert.deepEqual(info.inputs, {});
    assert.equal(info.deadline, undefined);
    // A server that does not trace sends no trace context.
    assert.deepEqual(info.traceContext, {});
    assert.equal(info.traceparent, undefined);
  });
});

describe("outcomeOfValue", () => {
  test("a plain object completes the task, through JSON", () => {
    const when = new Date("2026-01-01T00:00:00Z");
    assert.deepEqual(outcomeOfValue("t", { a: 1, gone: undefined, when, list: [null, "x"] }), {
      kind: "complete",
      output: { a: 1, when: "2026-01-01T00:00:00.000Z", list: [null, "x"] },
    });
    assert.deepEqual(outcomeOfValue("t", Object.create(null) as object), {
      kind: "complete",
      output: {},
    });
  });

  for (const [value, shown] of [
    [undefined, "returned undefined"],
    [null, "returned null"],
    ["text", 'returned a string ("text")'],
    [42, "returned number 42"],
    [[1, 2], "returned an array"],
    [new Map(), "returned a Map"],
  ] as const) {
    test(`${shown}: fails the task without retry`, () => {
      const outcome = outcomeOfValue("upper", value);
      assert.equal(outcome.kind, "fail");
      assert.ok(outcome.kind === "fail" && outcome.nonRetryable);
      assert.match(
        outcome.kind === "fail" ? outcome.error : "",
        new RegExp(`^the handler of task type "upper" ${escape(shown)}, not a JSON object`),
      );
    });
  }

  test("an output JSON cannot hold fails without retry", () => {
    const cycle: Record<string, unknown> = {};
    cycle["self"] = cycle;
    for (const value of [cycle, { big: 1n }]) {
      const outcome = outcomeOfValue("t", value);
      assert.ok(outcome.kind === "fail" && outcome.nonRetryable);
      assert.match(outcome.error, /^the output of task type "t" is not JSON: /);
    }
  });
});

function escape(text: string): string {
  return text.replace(/[()]/g, "\\$&");
}

describe("outcomeOfError", () => {
  test("any error is retryable, named", () => {
    assert.deepEqual(outcomeOfError(new RangeError("too far")), {
      kind: "fail",
      error: "RangeError: too far",
      nonRetryable: false,
      retryAfterMs: undefined,
      errorType: "",
    });
  });

  test("NonRetryableError: no retry, its own words", () => {
    assert.deepEqual(outcomeOfError(new NonRetryableError("bad config")), {
      kind: "fail",
      error: "bad config",
      nonRetryable: true,
      retryAfterMs: undefined,
      errorType: "",
    });
  });

  test("TaskError: retryable unless told, retryAfterMs passed on and capped at 24 h", () => {
    assert.deepEqual(outcomeOfError(new TaskError("busy", { retryAfterMs: 1500 })), {
      kind: "fail",
      error: "busy",
      nonRetryable: false,
      retryAfterMs: 1500,
      errorType: "",
    });
    const capped = outcomeOfError(new TaskError("later", { retryAfterMs: 1e12 }));
    assert.ok(capped.kind === "fail" && capped.retryAfterMs === MAX_RETRY_AFTER_MS);
    const nonRetryable = outcomeOfError(new TaskError("no", { nonRetryable: true }));
    assert.ok(nonRetryable.kind === "fail" && nonRetryable.nonRetryable);
    assert.ok(new NonRetryableError("x") instanceof TaskError);
    assert.equal(new NonRetryableError("x").name, "NonRetryableError");
  });

  test("another library's error with such fields is read the same", () => {
    const error = Object.assign(new Error("quota"), {
      nonRetryable: true,
      retryAfterMs: 250,
      errorType: "QuotaExceeded",
    });
    assert.deepEqual(outcomeOfError(error), {
      kind: "fail",
      error: "Error: quota",
      nonRetryable: true,
      retryAfterMs: 250,
      errorType: "QuotaExceeded",
    });
  });

  test("thrown non-errors, empty messages and long messages still make a valid error text", () => {
    assert.equal(errorText("oops"), 'thrown: a string ("oops")');
    assert.equal(errorText(undefined), "thrown: undefined");
    assert.equal(errorText(new Error("")), "Error");
    assert.equal(errorText(new TaskError("  ")), "the task failed");
    const long = errorText(new TaskError("x".repeat(20_000)));
    assert.equal(long.length, MAX_ERROR_CHARS);
    assert.ok(long.endsWith("…"));
  });
});

describe("RequestQueue", () => {
  test("yields what was pushed, waits for more, ends once drained after end()", async () => {
    const queue = new RequestQueue<number>();
    const pulls: number[] = [];
    queue.onNext((n) => pulls.push(n));
    queue.push(1);
    const it = queue[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { value: 1, done: false });
    const waiting = it.next();
    queue.push(2);
    assert.deepEqual(await waiting, { value: 2, done: false });
    queue.push(3);
    queue.end();
    assert.equal(queue.push(4), false, "nothing is queued after end()");
    assert.deepEqual(await it.next(), { value: 3, done: false });
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    assert.deepEqual(pulls, [1, 2, 3, 4]);
  });

  test("end() wakes a waiting pull; return() drops what is queued", async () => {
    const queue = new RequestQueue<number>();
    const it = queue[Symbol.asyncIterator]();
    const waiting = it.next();
    queue.end();
    assert.deepEqual(await waiting, { value: undefined, done: true });

    const other = new RequestQueue<number>();
    other.push(1);
    other.push(2);
    const it2 = other[Symbol.asyncIterator]();
    assert.deepEqual(await it2.next(), { value: 1, done: false });
    await it2.return();
    assert.equal(other.push(3), false);
    assert.deepEqual(await it2.next(), { value: undefined, done: true });
  });
});

describe("Worker options", () => {
  test("concurrency is 1-1000; register refuses duplicates and empty types", async () => {
    assert.throws(() => new Worker({ concurrency: 0 }), RangeError);
    assert.throws(() => new Worker({ concurrency: 1001 }), RangeError);
    assert.throws(() => new Worker({ concurrency: 1.5 }), RangeError);
    const worker = new Worker({ baseUrl: "http://127.0.0.1:1" });
    worker.register("a", () => ({}));
    assert.throws(() => worker.register("a", () => ({})), /registered already/);
    assert.throws(() => worker.register("", () => ({})), TypeError);
    await worker.stop();
    assert.throws(() => new Worker().run(), /register 1-100 task types/);
  });
});
