// The one client of the service: gRPC-Web to the origin that served the page (the Sluice
// server's SLUICE_HTTP_LISTEN, or the Vite dev server, which forwards the calls). The token,
// when there is one, goes as `authorization: Bearer ...`, exactly as other clients send it.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { WorkflowService } from "@gen/sluice/v1/workflow_service_pb.js";

import { auth } from "./auth";

const bearer: Interceptor = (next) => async (request) => {
  const token = auth.token;
  if (token) {
    request.header.set("authorization", `Bearer ${token}`);
  }
  try {
    return await next(request);
  } catch (error) {
    const found = ConnectError.from(error);
    if (found.code === Code.Unauthenticated) {
      auth.requireLogin(found.rawMessage);
    }
    throw error;
  }
};

export const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [bearer],
});

export const workflows = createClient(WorkflowService, transport);
