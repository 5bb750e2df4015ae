// Typed errors for the gRPC status codes Sluice answers with (mirrors sluice.client.errors).

import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** One bad field of a request: its path (e.g. "params.topic") and what is wrong with it. */
export interface FieldViolation {
  field: string;
  description: string;
}

export interface SluiceErrorOptions {
  code?: Code;
  violations?: FieldViolation[];
  cause?: unknown;
}

/** A call failed. `code` is the gRPC status; `violations` lists bad fields, if any. */
export class SluiceError extends Error {
  /** The gRPC status code (the numbers are gRPC's: 3 is INVALID_ARGUMENT, 5 NOT_FOUND, ...). */
  readonly code: Code;
  /** The field violations of a google.rpc.BadRequest detail; empty when there is none. */
  readonly violations: FieldViolation[];

  constructor(message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? Code.Unknown;
    this.violations = options.violations ?? [];
  }

  /** The status code's name in gRPC's spelling, e.g. "INVALID_ARGUMENT". */
  get codeName(): string {
    return codeName(this.code);
  }
}

type Rest = Omit<SluiceErrorOptions, "code">;

export class InvalidArgumentError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.InvalidArgument });
  }
}

export class NotFoundError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.NotFound });
  }
}

export class AlreadyExistsError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.AlreadyExists });
  }
}

export class FailedPreconditionError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.FailedPrecondition });
  }
}

export class AbortedError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.Aborted });
  }
}

export class UnauthenticatedError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.Unauthenticated });
  }
}

export class PermissionDeniedError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.PermissionDenied });
  }
}

export class ResourceExhaustedError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.ResourceExhausted });
  }
}

export class UnavailableError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.Unavailable });
  }
}

export class DeadlineExceededError extends SluiceError {
  constructor(message: string, options: Rest = {}) {
    super(message, { ...options, code: Code.DeadlineExceeded });
  }
}

const BY_CODE = new Map<Code, new (message: string, options?: Rest) => SluiceError>([
  [Code.InvalidArgument, InvalidArgumentError],
  [Code.NotFound, NotFoundError],
  [Code.AlreadyExists, AlreadyExistsError],
  [Code.FailedPrecondition, FailedPreconditionError],
  [Code.Aborted, AbortedError],
  [Code.Unauthenticated, UnauthenticatedError],
  [Code.PermissionDenied, PermissionDeniedError],
  [Code.ResourceExhausted, ResourceExhaustedError],
  [Code.Unavailable, UnavailableError],
  [Code.DeadlineExceeded, DeadlineExceededError],
]);

// Node's codes for a server certificate that no trusted CA vouches for (Connect reports them as
// INTERNAL): the fix is the CA option, so the error says so.
const UNTRUSTED_CERTIFICATE = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_UNTRUSTED",
]);

/** The typed error for a failed call, with the BadRequest field violations if present. */
export function fromConnectError(reason: unknown): SluiceError {
  if (reason instanceof SluiceError) {
    return reason;
  }
  const error = ConnectError.from(reason);
  const violations: FieldViolation[] = [];
  try {
    for (const badRequest of error.findDetails(BadRequestSchema)) {
      for (const v of badRequest.fieldViolations) {
        violations.push({ field: v.field, description: v.description });
      }
    }
  } catch {
    // Undecodable details: ignore them, the code and message still tell what happened.
  }
  const message = error.rawMessage || error.message;
  if (lostConnection(error)) {
    // connect-node reports a connection the server reset as ABORTED or INTERNAL (as it would
    // a client hanging up on a handler); gRPC's clients call it UNAVAILABLE, which a watch
    // with `reconnect` and the worker's retries act on. A server's own ABORTED has no cause.
    return new UnavailableError(`the connection to the server was lost: ${message}`, {
      cause: reason,
    });
  }
  if (UNTRUSTED_CERTIFICATE.has(String((error.cause as { code?: unknown } | undefined)?.code))) {
    return new UnavailableError(
      `the server's certificate is not trusted (${message}): pass the CA that signed it as ` +
        "the ca or caFile option",
      { cause: reason },
    );
  }
  const cls = BY_CODE.get(error.code);
  if (cls !== undefined) {
    return new cls(message, { violations, cause: reason });
  }
  return new SluiceError(message, { code: error.code, violations, cause: reason });
}

// Node's codes for a connection the other end broke while a call was under way.
const CONNECTION_LOST = new Set(["ECONNRESET", "EPIPE", "ERR_HTTP2_SESSION_ERROR"]);

function lostConnection(error: ConnectError): boolean {
  let cause: unknown = error.cause;
  for (let depth = 0; cause instanceof Error && depth < 10; depth++) {
    if (CONNECTION_LOST.has(String((cause as { code?: unknown }).code))) {
      return true;
    }
    cause = cause.cause;
  }
  return false;
}

/** "INVALID_ARGUMENT" for Code.InvalidArgument, and so on. */
export function codeName(code: Code): string {
  const name = Code[code] as string | undefined;
  return name === undefined ? String(code) : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
