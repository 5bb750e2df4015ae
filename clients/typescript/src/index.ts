// Public API of the Sluice TypeScript client.

export {
  WorkflowClient,
  DEFAULT_BASE_URL,
  type WorkflowClientOptions,
  type CallOptions,
  type TemplateLike,
  type Params,
  type CreateWorkflowOptions,
  type ExecuteWorkflowOptions,
  type ListWorkflowsOptions,
  type ListWorkflowEventsOptions,
  type GetAnalyticsOptions,
  type ResumeWorkflowOptions,
  type ApproveGateOptions,
  type WatchOptions,
  type CreateScheduleOptions,
  type UpdateScheduleChanges,
} from "./client.js";
export {
  Code,
  SluiceError,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  AbortedError,
  UnauthenticatedError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
  DeadlineExceededError,
  fromConnectError,
  codeName,
  type FieldViolation,
  type SluiceErrorOptions,
} from "./errors.js";
export type { ConnectionOptions } from "./transport.js";
export {
  Worker,
  type WorkerOptions,
  type TaskHandler,
  type WorkerLogger,
  type LogFields,
} from "./worker.js";
export { TaskError, NonRetryableError, type TaskInfo, type TaskErrorOptions } from "./task.js";

// The generated messages, enums and the service descriptor.
export * from "./gen/sluice/v1/analytics_pb.js";
export * from "./gen/sluice/v1/event_pb.js";
export * from "./gen/sluice/v1/template_pb.js";
export * from "./gen/sluice/v1/workflow_pb.js";
export * from "./gen/sluice/v1/workflow_service_pb.js";
export * from "./gen/sluice/v1/worker_service_pb.js";
export * from "./gen/sluice/v1/schedule_pb.js";
export * from "./gen/sluice/v1/schedule_service_pb.js";
export { BadRequestSchema, type BadRequest } from "./gen/google/rpc/error_details_pb.js";
