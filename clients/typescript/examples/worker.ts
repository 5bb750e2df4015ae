// An example worker serving two task types:
//   echo   returns {echo: the step's config, inputs, attempt} (as examples/worker.py does);
//   upper  returns {text: config.text in upper case}.
//
//   npm run build
//   node dist/examples/worker.js --base-url http://127.0.0.1:50051 --task-type upper
//
// Flags: --base-url (else http://$SLUICE_ADDRESS, as the CLI and the Python example take it, else
// http://127.0.0.1:50051), --token (or SLUICE_TOKEN), --task-type (repeatable;
// both by default), --concurrency (8). Prints "worker ready" once its stream is open; SIGTERM or
// SIGINT stops it gracefully (running tasks get 10 s to finish); a second signal kills it.

import { parseArgs } from "node:util";

import {
  DEFAULT_BASE_URL,
  NonRetryableError,
  Worker,
  type LogFields,
  type TaskHandler,
} from "../src/index.js";

const HANDLERS: Record<string, TaskHandler> = {
  echo: (task) => ({ echo: task.config, inputs: task.inputs, attempt: task.attempt }),
  upper: (task) => {
    const text = task.config["text"];
    if (typeof text !== "string") {
      // Retrying cannot fix the step's config: fail the step now.
      throw new NonRetryableError(`config.text must be a string, not ${JSON.stringify(text)}`);
    }
    return { text: text.toUpperCase() };
  },
};

const { values } = parseArgs({
  options: {
    "base-url": { type: "string" },
    token: { type: "string" },
    "task-type": { type: "string", multiple: true },
    concurrency: { type: "string", default: "8" },
  },
});

// Log lines go to stderr as JSON; stdout carries only "worker ready".
const line =
  (level: string) =>
  (message: string, fields: LogFields): void => {
    process.stderr.write(`${JSON.stringify({ level, message, ...fields })}\n`);
  };

const address = process.env["SLUICE_ADDRESS"];
const baseUrl = values["base-url"] ?? (address ? `http://${address}` : DEFAULT_BASE_URL);
const token = values.token ?? process.env["SLUICE_TOKEN"];
const worker = new Worker({
  baseUrl,
  ...(token !== undefined ? { token } : {}),
  concurrency: Number(values.concurrency),
  logger: { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error") },
  onStreamOpen: (() => {
    let told = false;
    return () => {
      if (!told) console.log("worker ready");
      told = true;
    };
  })(),
});

for (const taskType of values["task-type"] ?? Object.keys(HANDLERS)) {
  const handler = HANDLERS[taskType];
  if (handler === undefined) {
    console.error(`unknown task type ${taskType}; this example serves ${Object.keys(HANDLERS)}`);
    process.exit(2);
  }
  worker.register(taskType, handler);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    process.once(signal, () => process.exit(1));
    void worker.stop(10_000);
  });
}

try {
  await worker.run();
} catch (error) {
  console.error(`worker failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
