// How a failed call is typed: a connection the server reset is UNAVAILABLE (what a watch with
// `reconnect` and the worker's retries act on), as gRPC's own clients say, though connect-node
// reports it as ABORTED or INTERNAL; a server's own ABORTED stays ABORTED.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { AbortedError, UnavailableError } from "../src/index.js";
import { fromConnectError } from "../src/errors.js";

function nodeError(code: string): Error {
  return Object.assign(new Error(`read ${code}`), { code });
}

test("a connection the server reset is UNAVAILABLE, whatever connect-node called it", () => {
  for (const [code, connectCode] of [
    ["ECONNRESET", Code.Aborted],
    ["EPIPE", Code.Internal],
    ["ERR_HTTP2_SESSION_ERROR", Code.Internal],
  ] as const) {
    const reset = new ConnectError(`read ${code}`, connectCode, undefined, undefined, nodeError(code));
    const error = fromConnectError(reset);
    assert.ok(error instanceof UnavailableError, `${code}: ${error.name}`);
    assert.equal(error.code, Code.Unavailable);
    assert.match(error.message, /connection to the server was lost/);
  }
  // Deeper in the chain too (an error wrapping the socket's).
  const wrapped = new Error("stream closed", { cause: nodeError("ECONNRESET") });
  const deep = new ConnectError("stream closed", Code.Internal, undefined, undefined, wrapped);
  assert.ok(fromConnectError(deep) instanceof UnavailableError);
});

test("a server's own ABORTED (a conflict) is not a lost connection", () => {
  const error = fromConnectError(new ConnectError("the run changed meanwhile", Code.Aborted));
  assert.ok(error instanceof AbortedError);
  assert.equal(error.code, Code.Aborted);
});
