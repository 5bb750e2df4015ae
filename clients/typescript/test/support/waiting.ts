// Waiting in tests without sleeps: promises settled by what is awaited, a deadline on each wait,
// and the log lines a worker wrote, awaited by their message.

import type { LogFields, WorkerOptions } from "../../src/index.js";

/** A promise and the function that settles it. */
export function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
} {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

/** Rejects if `promise` has not settled within `ms`, naming what was awaited. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The log lines a worker wrote, by level. */
export class Lines {
  readonly seen: { level: string; message: string; fields: LogFields }[] = [];
  private readonly waiters: { match: (m: string) => boolean; done: () => void }[] = [];

  logger(): WorkerOptions["logger"] {
    const add = (level: string) => (message: string, fields: LogFields) => {
      this.seen.push({ level, message, fields });
      for (const waiter of this.waiters) if (waiter.match(message)) waiter.done();
    };
    return { debug: add("debug"), info: add("info"), warn: add("warn"), error: add("error") };
  }

  /** Resolves once a line whose message matches has been logged. */
  wait(pattern: RegExp): Promise<void> {
    if (this.seen.some((line) => pattern.test(line.message))) return Promise.resolve();
    return new Promise((done) => this.waiters.push({ match: (m) => pattern.test(m), done }));
  }
}
