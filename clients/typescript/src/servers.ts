// Several servers behind one Transport: calls go round-robin over those that are connected,
// and one that cannot be reached is left out until it answers again.
//
// Connect's Node transport talks to one URL and has no resolver or balancer (unlike gRPC's
// round_robin, which the Python client uses), so this is the smallest balancer that behaves
// the same way: every server is connected at first; a call takes the next connected one;
// when none is, it waits for the first that connects; a server that failed is tried again in
// the background after a backoff of 100 ms doubling to 2 s (the Python client's settings).

import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";

const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;

/** One server: its transport, and the HTTP/2 connection the transport uses. */
export interface Backend {
  url: string;
  transport: Transport;
  sessionManager: Http2SessionManager;
}

class Server {
  private connecting: Promise<boolean> | undefined;
  private backoffMs = INITIAL_BACKOFF_MS;
  private retryAt = 0;
  private lastError: unknown;

  constructor(readonly backend: Backend) {}

  /** Connected now: a call can go out at once. */
  ready(): boolean {
    const state = this.backend.sessionManager.state();
    return state === "open" || state === "idle" || state === "verifying";
  }

  /** Start connecting unless it is already, or it failed and waits out its backoff. */
  poke(): void {
    if (!this.ready() && this.connecting === undefined && Date.now() >= this.retryAt) {
      void this.connect();
    }
  }

  /** Whether a connection was made (or was there); remembers a failure for the backoff. */
  connect(): Promise<boolean> {
    this.connecting ??= this.backend.sessionManager.connect().then((state) => {
      this.connecting = undefined;
      if (state !== "error") {
        this.backoffMs = INITIAL_BACKOFF_MS;
        return true;
      }
      this.lastError = this.backend.sessionManager.error();
      this.retryAt = Date.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      return false;
    });
    return this.connecting;
  }

  waiting(): boolean {
    return this.connecting !== undefined || Date.now() >= this.retryAt;
  }

  describe(): string {
    const error = this.lastError;
    const reason = error instanceof Error ? error.message : "not connected";
    return `${this.backend.url}: ${reason}`;
  }

  /** What made the last connection fail (a Node error with its `code`), if one did. */
  cause(): unknown {
    const error = this.lastError;
    return error instanceof ConnectError && error.cause !== undefined ? error.cause : error;
  }
}

/** A Transport over several servers, round-robin over those connected. */
export class RoundRobinTransport implements Transport {
  private readonly servers: Server[];
  private next = 0;

  constructor(backends: Backend[]) {
    this.servers = backends.map((backend) => new Server(backend));
  }

  unary: Transport["unary"] = async (...args) => (await this.pick()).unary(...args);

  stream: Transport["stream"] = async (...args) => (await this.pick()).stream(...args);

  private async pick(): Promise<Transport> {
    const count = this.servers.length;
    for (const server of this.servers) {
      server.poke(); // servers that are down come back into the rotation once they connect
    }
    for (let i = 0; i < count; i++) {
      const index = (this.next + i) % count;
      const server = this.servers[index]!;
      if (server.ready()) {
        this.next = (index + 1) % count;
        return server.backend.transport;
      }
    }
    // None is connected: the first that connects takes the call, as gRPC queues calls while
    // its channel connects. Servers waiting out a backoff are not waited for: when every
    // server is, the call fails at once, as gRPC's does.
    const trying = this.servers.filter((server) => server.waiting());
    const connected = trying.map((server) =>
      server.connect().then((ok) => (ok ? server : Promise.reject(new Error("unreachable")))),
    );
    try {
      const server = await Promise.any(connected);
      return server.backend.transport;
    } catch {
      const reasons = this.servers.map((server) => server.describe()).join("; ");
      // The first failure's cause, so an untrusted certificate still gets its own message.
      const cause = this.servers.map((server) => server.cause()).find((c) => c !== undefined);
      throw new ConnectError(`no server answers: ${reasons}`, Code.Unavailable, {}, [], cause);
    }
  }
}
