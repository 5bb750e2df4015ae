// A failed call as an operator reads it: the status's name, the server's message, and each
// field violation of a google.rpc.BadRequest (INVALID_ARGUMENT lists every problem at once).

import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema } from "@gen/google/rpc/error_details_pb.js";

export interface Problem {
  code: string;
  message: string;
  violations: { field: string; description: string }[];
}

const NAMES: Record<number, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

export function problemOf(error: unknown): Problem {
  const found = ConnectError.from(error);
  const violations = found
    .findDetails(BadRequestSchema)
    .flatMap((detail) => detail.fieldViolations)
    .map((v) => ({ field: v.field, description: v.description }));
  return { code: NAMES[found.code] ?? String(found.code), message: found.rawMessage, violations };
}

export function isUnauthenticated(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unauthenticated;
}
