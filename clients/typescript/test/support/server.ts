// Starts a real Sluice server (the Python one, from the repo's .venv) for the tests, on a free
// port and a fresh SQLite database, and stops it with SIGTERM.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// This file runs as clients/typescript/dist/test/support/server.js: the repository is five up.
const REPO = process.env["SLUICE_REPO"] ?? resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../../..");
const PYTHON = process.env["SLUICE_PYTHON"] ?? join(REPO, ".venv", "bin", "python");
const SERVING = /serving on (127\.0\.0\.1:(\d+))/;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;

/** The files `sluice cert` writes: a development CA and a server certificate it signed. */
export interface DevCertificates {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Runs the real `sluice cert --out DIR`. */
export function makeDevCertificates(dir: string): DevCertificates {
  execFileSync(PYTHON, ["-m", "sluice.cli", "cert", "--out", dir], { cwd: REPO, stdio: "pipe" });
  return {
    caFile: join(dir, "ca.pem"),
    certFile: join(dir, "server.pem"),
    keyFile: join(dir, "server-key.pem"),
  };
}

export class ServerProcess {
  /** e.g. "http://127.0.0.1:41234", or https:// for a TLS server */
  baseUrl = "";
  /** Everything the server wrote to stderr, for failure messages. */
  log = "";
  /** The server's working folder: its database, and whatever a test keeps beside it. */
  readonly dir = mkdtempSync(join(tmpdir(), "sluice-ts-"));
  private child: ChildProcess | undefined;

  /** `settings`: more SLUICE_* variables for the server; a certificate makes it serve TLS. */
  constructor(private readonly settings: Record<string, string> = {}) {}

  /** One more SLUICE_* variable, for the next start. */
  setting(name: string, value: string): void {
    this.settings[name] = value;
  }

  /** SIGSTOP: the process stops in its tracks, its connections open, as when cut off. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  /** SIGCONT after pause(). */
  unpause(): void {
    this.child?.kill("SIGCONT");
  }

  /** kill -9, then the server again on the same database and the same address. */
  async killAndStartAgain(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((done) => child.once("exit", () => done()));
      child.kill("SIGKILL");
      await exited;
    }
    this.settings["SLUICE_LISTEN"] = new URL(this.baseUrl).host;
    this.log = "";
    await this.start();
  }

  async start(): Promise<this> {
    const scheme = this.settings["SLUICE_TLS_CERT_FILE"] ? "https" : "http";
    const child = spawn(PYTHON, ["-m", "sluice.server"], {
      cwd: REPO,
      env: {
        ...process.env,
        SLUICE_LISTEN: "127.0.0.1:0",
        SLUICE_DATABASE_URL: `sqlite+aiosqlite:///${join(this.dir, "sluice.db")}`,
        SLUICE_SHUTDOWN_GRACE_SECONDS: "5",
        ...this.settings,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    child.stderr!.setEncoding("utf8");
    this.baseUrl = await new Promise<string>((resolvePort, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server did not start in time:\n${this.log}`)),
        START_TIMEOUT_MS,
      );
      const onData = (chunk: string): void => {
        this.log += chunk;
        const match = SERVING.exec(this.log);
        if (match) {
          clearTimeout(timer);
          resolvePort(`${scheme}://${match[1]}`);
        }
      };
      child.stderr!.on("data", onData);
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`cannot start ${PYTHON}: ${error.message}`));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code ?? signal}) before serving:\n${this.log}`));
      });
    });
    return this;
  }

  /** SIGTERM, then wait for the exit; resolves to the exit code. */
  async stop(): Promise<number | null> {
    const child = this.child;
    try {
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
        return child?.exitCode ?? null;
      }
      const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
