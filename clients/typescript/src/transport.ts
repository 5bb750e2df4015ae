// How the client and the worker reach the server: Connect's Node gRPC transport per server URL,
// with the bearer token and headers on every call, TLS with a private CA, keepalive pings and
// round-robin over several servers. One place, so a WorkflowClient and a Worker given the same
// options connect the same way.

import { readFileSync } from "node:fs";

import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { RoundRobinTransport, type Backend } from "./servers.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:50051";

// As the Python client's: a PING every 20 s while streams are open, answered within 10 s.
const KEEPALIVE_MS = 20_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;

/** Where the server is and how to talk to it; shared by WorkflowClient and Worker. */
export interface ConnectionOptions {
  /**
   * The server, e.g. "http://127.0.0.1:50051" (plain HTTP/2) or "https://sluice.example:443";
   * or several servers that share one database, as an array or one string with commas
   * ("http://10.0.0.1:50051,http://10.0.0.2:50051"): calls go round-robin over those that are
   * connected, and one that cannot be reached is left out until it answers again.
   */
  baseUrl?: string | string[];
  /**
   * PEM certificate(s) of the CA that signed a TLS server's certificate (e.g. the ca.pem of
   * `sluice cert`), trusted instead of Node's public roots. Needs an https:// baseUrl.
   */
  ca?: string | Buffer;
  /** Path of a PEM CA file, read once when the client is made; the same as `ca`. */
  caFile?: string;
  /** Sent as `authorization: Bearer <token>` metadata on every call. */
  token?: string;
  /** More metadata sent on every call. */
  headers?: Record<string, string>;
  /** Timeout of each call in milliseconds, unless the call sets its own; watch() has none. */
  defaultTimeoutMs?: number;
  /**
   * While streams are open (a watch waiting for events), a PING every this many ms (20,000),
   * answered within 10 s or the connection closes and its calls fail UNAVAILABLE: a server that
   * stopped answering without closing the connection (a paused process, a lost machine) is
   * noticed, and a watch with `reconnect` goes on elsewhere. null: no pings.
   */
  keepaliveMs?: number | null;
  /** Extra Connect interceptors, run after the one that adds the metadata. */
  interceptors?: Interceptor[];
  /** Use this transport instead of creating one (baseUrl, TLS, token and headers are ignored). */
  transport?: Transport;
}

/** A transport and the HTTP/2 connections it opened (none for a transport given ready). */
export interface Connection {
  transport: Transport;
  /** Close the HTTP/2 connections. Calls made afterwards open new ones. */
  close(): void;
}

/** The transport `options` describe; `owner` names the caller in option errors. */
export function openConnection(options: ConnectionOptions, owner: string): Connection {
  if (options.transport !== undefined) {
    return { transport: options.transport, close: () => {} };
  }
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) {
    headers["authorization"] = `Bearer ${options.token}`;
  }
  const addHeaders: Interceptor = (next) => (req) => {
    for (const [name, value] of Object.entries(headers)) {
      req.header.set(name, value);
    }
    return next(req);
  };
  const sessionManagers: Http2SessionManager[] = [];
  const backends = baseUrls(options.baseUrl, owner).map((baseUrl): Backend => {
    const tls = tlsOptions(baseUrl, options, owner);
    const keepaliveMs = options.keepaliveMs === undefined ? KEEPALIVE_MS : options.keepaliveMs;
    const pings =
      keepaliveMs === null
        ? undefined
        : {
            pingIntervalMs: keepaliveMs,
            pingTimeoutMs: Math.min(keepaliveMs, KEEPALIVE_TIMEOUT_MS),
          };
    const sessionManager = new Http2SessionManager(baseUrl, pings, tls);
    sessionManagers.push(sessionManager);
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager,
      interceptors: [addHeaders, ...(options.interceptors ?? [])],
      ...(options.defaultTimeoutMs !== undefined
        ? { defaultTimeoutMs: options.defaultTimeoutMs }
        : {}),
    });
    return { url: baseUrl, transport, sessionManager };
  });
  const transport =
    backends.length === 1 ? backends[0]!.transport : new RoundRobinTransport(backends);
  return {
    transport,
    close: () => {
      for (const sessionManager of sessionManagers) {
        sessionManager.abort();
      }
    },
  };
}

/** The server URLs in `baseUrl`: one, an array, or one string with commas. */
function baseUrls(baseUrl: string | string[] | undefined, owner: string): string[] {
  const given = baseUrl ?? DEFAULT_BASE_URL;
  const urls = (Array.isArray(given) ? given : [given])
    .flatMap((url) => url.split(","))
    .map((url) => url.trim())
    .filter((url) => url !== "");
  if (urls.length === 0) {
    throw new TypeError(`${owner}: no server URL in baseUrl ${JSON.stringify(baseUrl)}`);
  }
  return [...new Set(urls)];
}

/** Node's HTTP/2 options trusting the CA given as `ca` or `caFile`; none without one. */
function tlsOptions(
  baseUrl: string,
  options: Pick<ConnectionOptions, "ca" | "caFile">,
  owner: string,
): { ca: string | Buffer } | undefined {
  if (options.ca !== undefined && options.caFile !== undefined) {
    throw new TypeError(`${owner}: pass either ca or caFile, not both`);
  }
  if (options.ca === undefined && options.caFile === undefined) {
    return undefined;
  }
  if (!baseUrl.startsWith("https://")) {
    throw new TypeError(
      `${owner}: a CA is for TLS servers; use an https:// baseUrl (not ${baseUrl})`,
    );
  }
  if (options.ca !== undefined) {
    return { ca: options.ca };
  }
  try {
    return { ca: readFileSync(options.caFile!) };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${owner}: cannot read caFile ${options.caFile}: ${reason}`);
  }
}
