// The TypeScript client: the verbs of the Python client (sluice.client.WorkflowClient) over
// sluice.v1.WorkflowService, spoken as plain gRPC over HTTP/2 with Connect's Node transport.

import {
  fromJson,
  isMessage,
  type JsonObject,
  type JsonValue,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client } from "@connectrpc/connect";

import { fromConnectError, type SluiceError } from "./errors.js";
import { openConnection, type ConnectionOptions } from "./transport.js";
import type { EventType, WorkflowEvent } from "./gen/sluice/v1/event_pb.js";
import { TemplateSchema, type Template } from "./gen/sluice/v1/template_pb.js";
import { type Workflow, type WorkflowStatus } from "./gen/sluice/v1/workflow_pb.js";
import {
  WorkflowService,
  WorkflowView,
  type CreateWorkflowRequest,
  type GetAnalyticsRequestSchema,
  type GetAnalyticsResponse,
  type ListWorkflowEventsResponse,
  type ListWorkflowsRequestSchema,
  type ListWorkflowsResponse,
  type RerunWorkflowRequestSchema,
  type ResumeWorkflowRequestSchema,
  type ValidateTemplateResponse,
} from "./gen/sluice/v1/workflow_service_pb.js";
import {
  OverlapPolicy,
  ScheduleSchema,
  type Schedule,
  type ScheduleFire,
} from "./gen/sluice/v1/schedule_pb.js";
import { ScheduleService } from "./gen/sluice/v1/schedule_service_pb.js";
import { ExecutionOptionsSchema } from "./gen/sluice/v1/workflow_pb.js";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";

export { DEFAULT_BASE_URL } from "./transport.js";

/**
 * Where the server is and how to talk to it: `baseUrl` (one server, an array, or one string with
 * commas), `ca`/`caFile`, `token`, `headers`, `defaultTimeoutMs`, `keepaliveMs`,
 * `interceptors`, or a ready `transport` (see ConnectionOptions).
 */
export interface WorkflowClientOptions extends ConnectionOptions {}

/** Options of createSchedule(). */
export interface CreateScheduleOptions extends CallOptions {
  /** IANA time zone the cron is read in; "UTC" by default. */
  timeZone?: string;
  /** Params of each run. */
  params?: Params;
  /** What a slot does while the previous run has not ended; SKIP by default. */
  overlap?: OverlapPolicy;
  /** After downtime, slots missed no longer ago than this still fire; 60 s by default. */
  catchupWindowMs?: number;
  /** Template version; 0 (the default) means the latest at each fire. */
  version?: number;
  /** Runs pass approval gates at once. */
  autoApprove?: boolean;
  /** Runs notify when they complete. */
  notifyOnCompletion?: boolean;
  /** Create it paused. */
  paused?: boolean;
  /** A sentence for people. */
  description?: string;
}

/** The settings updateSchedule() changes: those given; the others keep their values. */
export interface UpdateScheduleChanges {
  cron?: string;
  timeZone?: string;
  params?: Params;
  overlap?: OverlapPolicy;
  catchupWindowMs?: number;
  templateId?: string;
  version?: number;
  autoApprove?: boolean;
  notifyOnCompletion?: boolean;
  description?: string;
}

/** Per-call options accepted by every verb. */
export interface CallOptions {
  /** Timeout of this call in milliseconds. */
  timeoutMs?: number;
  /** Aborting it cancels the call. */
  signal?: AbortSignal;
}

/** A Template message, or a template in proto-JSON form (as in the README and templates/). */
export type TemplateLike = Template | JsonObject;

/** A run's params: a JSON object (sent as a google.protobuf.Struct). */
export type Params = { [name: string]: JsonValue };

export interface CreateWorkflowOptions extends CallOptions {
  /** With a template id: the registered version to run; 0 (the default) means the latest. */
  version?: number;
  /** Idempotency key (a UUID): a retried call with the same id returns the same run. */
  requestId?: string;
}

export interface ExecuteWorkflowOptions extends CallOptions {
  /** Approval gates pass at once instead of waiting for approveGate(). */
  autoApprove?: boolean;
  /** Emit a NOTIFICATION event when the run completes. */
  notifyOnCompletion?: boolean;
  /** Return only once the run rests (COMPLETED, FAILED, CANCELLED or PAUSED). */
  wait?: boolean;
  /** Idempotency key: a retried call with the same id returns the run and starts nothing. */
  requestId?: string;
}

export interface ListWorkflowsOptions extends CallOptions {
  /** Only runs in one of these statuses; empty means all. */
  statuses?: WorkflowStatus[];
  /** Only runs of this template. */
  templateId?: string;
  /** Only runs created at or after this time. */
  createTimeStart?: Date;
  /** Only runs created before this time. */
  createTimeEnd?: Date;
  /**
   * How much of each run: BASIC (the default) leaves out the run's template and its steps'
   * outputs; FULL returns every field, as getWorkflow does.
   */
  view?: WorkflowView;
  /** Maximum runs per page, 1-1000; 0 means the server's default (50). */
  pageSize?: number;
  /** nextPageToken of a previous call with the same filters and view. */
  pageToken?: string;
}

export interface GetAnalyticsOptions extends CallOptions {
  /** Count the runs that ended at or after this time (rounded down to the hour); default: 24
   * hours before `endTime`. */
  startTime?: Date;
  /** ... and before this time (rounded up to the hour); default: the end of the current hour. */
  endTime?: Date;
  /** Only runs of this template. */
  templateId?: string;
  /** With `templateId`: only runs of this version; 0 (the default) means every version. */
  templateVersion?: number;
  /** Only this step type in `stepTypes` (templates and gate types are not filtered by it). */
  stepType?: string;
}

export interface ListWorkflowEventsOptions extends CallOptions {
  /** Only events of one of these types; empty means all. */
  types?: EventType[];
  /** Only events of these steps of the run's template (and of the gates on them). */
  stepIds?: string[];
  /** Only events with a greater sequence (the last one read, to read what followed). */
  afterSequence?: number | bigint;
  /** Maximum events per page, 1-1000; 0 means the server's default (100). */
  pageSize?: number;
  /** nextPageToken of a previous call with the same run, filters and afterSequence. */
  pageToken?: string;
}

export interface ResumeWorkflowOptions extends CallOptions {
  /** New autoApprove for the rest of the run; unset keeps the run's current one. */
  autoApprove?: boolean;
  /** New notifyOnCompletion for the rest of the run; unset keeps the run's current one. */
  notifyOnCompletion?: boolean;
  /** Return only once the run rests again. */
  wait?: boolean;
}

export interface ApproveGateOptions extends CallOptions {
  /** True (the default) approves and the run continues; false rejects and the run fails. */
  approve?: boolean;
  /** Recorded in the gate result and the event. */
  comment?: string;
  /** Return only once the run rests again (after an approval). */
  wait?: boolean;
}

export interface RerunWorkflowOptions extends CallOptions {
  /** Run this step and every step downstream of it again, even if they completed. */
  fromStep?: string;
  /**
   * The new run's autoApprove. With it and notifyOnCompletion both unset the new run has the
   * original's options; setting either gives it new ones (the other false).
   */
  autoApprove?: boolean;
  /** The new run's notifyOnCompletion (see autoApprove). */
  notifyOnCompletion?: boolean;
  /** Return only once the new run rests (COMPLETED, FAILED, CANCELLED or PAUSED). */
  wait?: boolean;
  /** Idempotency key (a UUID): a retried call with the same id returns the same new run. */
  requestId?: string;
}

export interface WatchOptions {
  /** Stream only events with a greater sequence (the last one seen, to resume); 0 streams all. */
  afterSequence?: number | bigint;
  /** Keep the stream open after the terminal event, until `signal` aborts. */
  follow?: boolean;
  /** Aborting it closes the stream; the iteration then ends without an error. */
  signal?: AbortSignal;
  /**
   * Open a stream broken by the server going away (UNAVAILABLE, or cancelled by the server)
   * again from the last sequence received, after a backoff, so every event arrives once and in
   * order. With several servers it reopens on one that answers.
   */
  reconnect?: boolean;
  /** The first wait before reopening, in ms (100); it doubles after each failed try. */
  initialBackoffMs?: number;
  /** The longest wait between tries, in ms (5,000). */
  maxBackoffMs?: number;
  /** Give up, throwing the last error, after this many ms without an event (120,000); null: never. */
  giveUpAfterMs?: number | null;
  /** Called before each wait with the error that broke the stream and the wait in ms. */
  onReconnect?: (error: SluiceError, delayMs: number) => void;
}

/**
 * Client of sluice.v1.WorkflowService. Failed calls reject with a typed SluiceError
 * (InvalidArgumentError, NotFoundError, ...), never a raw ConnectError. Call close() when done,
 * so the HTTP/2 connection does not keep the process alive.
 */
export class WorkflowClient {
  private readonly client: Client<typeof WorkflowService>;
  private readonly schedules: Client<typeof ScheduleService>;
  private readonly connection: { close(): void };

  constructor(options: WorkflowClientOptions = {}) {
    const connection = openConnection(options, "WorkflowClient");
    this.connection = connection;
    this.client = createClient(WorkflowService, connection.transport);
    this.schedules = createClient(ScheduleService, connection.transport);
  }

  /** Close the HTTP/2 connection. Calls made afterwards open a new one. */
  close(): void {
    this.connection.close();
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw fromConnectError(error);
    }
  }

  // --- templates --------------------------------------------------------------------------------

  /** Every template: the predefined ones, then the caller's (latest version of each). */
  async listTemplates(options: CallOptions = {}): Promise<Template[]> {
    const found: Template[] = [];
    let pageToken = "";
    do {
      const response = await this.call(() =>
        this.client.listTemplates({ pageToken }, callOptions(options)),
      );
      found.push(...response.templates);
      pageToken = response.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /** One template; `version` 0 (the default) means the latest. */
  async getTemplate(
    templateId: string,
    options: CallOptions & { version?: number } = {},
  ): Promise<Template> {
    const response = await this.call(() =>
      this.client.getTemplate(
        { templateId, version: options.version ?? 0 },
        callOptions(options),
      ),
    );
    return required(response.template, "template");
  }

  /** Register a custom template; registering an id again adds a version. */
  async createTemplate(template: TemplateLike, options: CallOptions = {}): Promise<Template> {
    const request = { template: toTemplate(template) };
    const response = await this.call(() =>
      this.client.createTemplate(request, callOptions(options)),
    );
    return required(response.template, "template");
  }

  /**
   * Delete a registered template: one `version`, or every version (0, the default). Runs made
   * from it keep their copy. Resolves to the number of versions deleted.
   */
  async deleteTemplate(
    templateId: string,
    options: CallOptions & { version?: number } = {},
  ): Promise<number> {
    const request = { templateId, version: options.version ?? 0 };
    const response = await this.call(() =>
      this.client.deleteTemplate(request, callOptions(options)),
    );
    return response.deletedVersions;
  }

  /** Every problem of a template at once (`valid`, `violations`); changes nothing. */
  async validateTemplate(
    template: TemplateLike,
    options: CallOptions = {},
  ): Promise<ValidateTemplateResponse> {
    const request = { template: toTemplate(template) };
    return this.call(() => this.client.validateTemplate(request, callOptions(options)));
  }

  // --- runs -------------------------------------------------------------------------------------

  /** Create a PENDING run from a template id (predefined or registered) or an inline template. */
  async createWorkflow(
    template: string | TemplateLike,
    params: Params = {},
    options: CreateWorkflowOptions = {},
  ): Promise<Workflow> {
    const source: CreateWorkflowRequest["source"] =
      typeof template === "string"
        ? { case: "templateId", value: template }
        : { case: "template", value: toTemplate(template) };
    const request = {
      source,
      templateVersion: options.version ?? 0,
      params,
      requestId: options.requestId ?? "",
    };
    const response = await this.call(() =>
      this.client.createWorkflow(request, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** Start a run. With `wait`, resolve once it rests (completed, failed, cancelled or paused). */
  async executeWorkflow(id: string, options: ExecuteWorkflowOptions = {}): Promise<Workflow> {
    const request = {
      workflowId: id,
      options: {
        autoApprove: options.autoApprove ?? false,
        notifyOnCompletion: options.notifyOnCompletion ?? false,
      },
      wait: options.wait ?? false,
      requestId: options.requestId ?? "",
    };
    const response = await this.call(() =>
      this.client.executeWorkflow(request, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** One run with its steps, gate results and metrics. */
  async getWorkflow(id: string, options: CallOptions = {}): Promise<Workflow> {
    const response = await this.call(() =>
      this.client.getWorkflow({ workflowId: id }, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** One page of the caller's runs, newest first; pass `nextPageToken` back for the next. */
  async listWorkflows(options: ListWorkflowsOptions = {}): Promise<ListWorkflowsResponse> {
    const request: MessageInitShape<typeof ListWorkflowsRequestSchema> = {
      statuses: options.statuses ?? [],
      templateId: options.templateId ?? "",
      view: options.view ?? WorkflowView.UNSPECIFIED,
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
    };
    if (options.createTimeStart !== undefined) {
      request.createTimeStart = timestampFromDate(options.createTimeStart);
    }
    if (options.createTimeEnd !== undefined) {
      request.createTimeEnd = timestampFromDate(options.createTimeEnd);
    }
    return this.call(() => this.client.listWorkflows(request, callOptions(options)));
  }

  /** Every matching run, fetching pages as needed. */
  async *iterWorkflows(
    options: Omit<ListWorkflowsOptions, "pageToken"> = {},
  ): AsyncGenerator<Workflow, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.listWorkflows({ ...options, pageToken });
      yield* page.workflows;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /** Delete a run that has ended (COMPLETED, FAILED or CANCELLED), with its events. */
  async deleteWorkflow(id: string, options: CallOptions = {}): Promise<void> {
    await this.call(() => this.client.deleteWorkflow({ workflowId: id }, callOptions(options)));
  }

  /** Pause a RUNNING run: no new step starts, running ones finish. */
  async pauseWorkflow(id: string, reason = "", options: CallOptions = {}): Promise<Workflow> {
    const response = await this.call(() =>
      this.client.pauseWorkflow({ workflowId: id, reason }, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** Resume a PAUSED run; options left unset keep the run's current ones (one call). */
  async resumeWorkflow(id: string, options: ResumeWorkflowOptions = {}): Promise<Workflow> {
    const request: MessageInitShape<typeof ResumeWorkflowRequestSchema> = {
      workflowId: id,
      wait: options.wait ?? false,
    };
    if (options.autoApprove !== undefined) request.autoApprove = options.autoApprove;
    if (options.notifyOnCompletion !== undefined) {
      request.notifyOnCompletion = options.notifyOnCompletion;
    }
    const response = await this.call(() =>
      this.client.resumeWorkflow(request, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** Cancel a PENDING, RUNNING or PAUSED run, stopping its running steps. */
  async cancelWorkflow(id: string, reason = "", options: CallOptions = {}): Promise<Workflow> {
    const response = await this.call(() =>
      this.client.cancelWorkflow({ workflowId: id, reason }, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** Decide the gate a PAUSED run waits on: approve (the default) continues, reject fails it. */
  async approveGate(
    id: string,
    gateId: string,
    options: ApproveGateOptions = {},
  ): Promise<Workflow> {
    const request = {
      workflowId: id,
      gateId,
      approve: options.approve ?? true,
      comment: options.comment ?? "",
      wait: options.wait ?? false,
    };
    const response = await this.call(() =>
      this.client.approveGate(request, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /**
   * Rerun a FAILED or CANCELLED run as a new, started run (its `rerunOf` names the original):
   * it takes over the outputs of the steps that completed and runs the rest.
   */
  async rerunWorkflow(id: string, options: RerunWorkflowOptions = {}): Promise<Workflow> {
    const request: MessageInitShape<typeof RerunWorkflowRequestSchema> = {
      workflowId: id,
      fromStepId: options.fromStep ?? "",
      wait: options.wait ?? false,
      requestId: options.requestId ?? "",
    };
    if (options.autoApprove !== undefined || options.notifyOnCompletion !== undefined) {
      request.options = {
        autoApprove: options.autoApprove ?? false,
        notifyOnCompletion: options.notifyOnCompletion ?? false,
      };
    }
    const response = await this.call(() =>
      this.client.rerunWorkflow(request, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /** Start the next attempt of a step waiting out its retry backoff (RETRYING) now. */
  async retryStep(id: string, stepId: string, options: CallOptions = {}): Promise<Workflow> {
    const response = await this.call(() =>
      this.client.retryStep({ workflowId: id, stepId }, callOptions(options)),
    );
    return required(response.workflow, "workflow");
  }

  /**
   * The run's events after `afterSequence`: the stored ones, then live ones as they commit,
   * numbered with no gap. Ends after the terminal event unless `follow`; aborting `signal` (or
   * breaking out of the loop) closes the stream. With `reconnect`, a stream the server broke
   * is opened again from the last sequence received; without, call it again with that
   * `afterSequence` to resume.
   */
  async *watch(
    id: string,
    options: WatchOptions = {},
  ): AsyncGenerator<WorkflowEvent, void, undefined> {
    const outer = options.signal;
    const initialBackoffMs = options.initialBackoffMs ?? 100;
    const maxBackoffMs = options.maxBackoffMs ?? 5_000;
    const giveUpAfterMs = options.giveUpAfterMs === undefined ? 120_000 : options.giveUpAfterMs;
    let last = BigInt(options.afterSequence ?? 0);
    let delayMs = initialBackoffMs;
    let brokenSince: number | undefined;
    for (;;) {
      if (outer?.aborted) {
        return;
      }
      const controller = new AbortController();
      const onAbort = (): void => controller.abort(outer?.reason);
      outer?.addEventListener("abort", onAbort, { once: true });
      const request = { workflowId: id, afterSequence: last, follow: options.follow ?? false };
      try {
        const stream = this.client.watchWorkflow(request, { signal: controller.signal });
        for await (const response of stream) {
          if (response.event !== undefined) {
            delayMs = initialBackoffMs;
            brokenSince = undefined;
            last = response.event.sequence;
            yield response.event;
          }
        }
        return;
      } catch (error) {
        if (outer?.aborted) {
          return;
        }
        const failure = fromConnectError(error);
        brokenSince ??= Date.now();
        const givenUp = giveUpAfterMs !== null && Date.now() - brokenSince > giveUpAfterMs;
        if (!options.reconnect || !RECONNECT_ON.has(failure.code) || givenUp) {
          throw failure;
        }
        options.onReconnect?.(failure, delayMs);
      } finally {
        outer?.removeEventListener("abort", onAbort);
        controller.abort();
      }
      await sleep(delayMs, outer);
      delayMs = Math.min(delayMs * 2, maxBackoffMs);
    }
  }

  /**
   * One page of the run's stored events, oldest first, as `watch` yields them (no stream: any
   * server answers); pass `nextPageToken` back for the next.
   */
  async listWorkflowEvents(
    id: string,
    options: ListWorkflowEventsOptions = {},
  ): Promise<ListWorkflowEventsResponse> {
    const request = {
      workflowId: id,
      types: options.types ?? [],
      stepIds: options.stepIds ?? [],
      afterSequence: BigInt(options.afterSequence ?? 0),
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
    };
    return this.call(() => this.client.listWorkflowEvents(request, callOptions(options)));
  }

  /**
   * Your runs that ended in a window (whole hours, UTC): per template, step type and gate type,
   * counts by outcome, success rates and p50/p95/p99 durations (within 9.1 %).
   */
  async getAnalytics(options: GetAnalyticsOptions = {}): Promise<GetAnalyticsResponse> {
    const request: MessageInitShape<typeof GetAnalyticsRequestSchema> = {
      templateId: options.templateId ?? "",
      templateVersion: options.templateVersion ?? 0,
      stepType: options.stepType ?? "",
    };
    if (options.startTime !== undefined) {
      request.startTime = timestampFromDate(options.startTime);
    }
    if (options.endTime !== undefined) {
      request.endTime = timestampFromDate(options.endTime);
    }
    return this.call(() => this.client.getAnalytics(request, callOptions(options)));
  }

  /** Every matching stored event of the run, fetching pages as needed; ends with the last one. */
  async *iterWorkflowEvents(
    id: string,
    options: Omit<ListWorkflowEventsOptions, "pageToken"> = {},
  ): AsyncGenerator<WorkflowEvent, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.listWorkflowEvents(id, { ...options, pageToken });
      yield* page.events;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  // --- schedules (sluice.v1.ScheduleService) --------------------------------------------------

  /**
   * Create a schedule that starts a run of `templateId` at every slot of `cron` (5 fields, or 6
   * with seconds first) read in `timeZone` (default UTC). Resolves to it with its next fire time.
   */
  async createSchedule(
    scheduleId: string,
    templateId: string,
    cron: string,
    options: CreateScheduleOptions = {},
  ): Promise<Schedule> {
    const schedule = create(ScheduleSchema, {
      scheduleId,
      templateId,
      cron,
      templateVersion: options.version ?? 0,
      params: options.params ?? {},
      timeZone: options.timeZone ?? "UTC",
      overlapPolicy: options.overlap ?? OverlapPolicy.SKIP,
      options: {
        autoApprove: options.autoApprove ?? false,
        notifyOnCompletion: options.notifyOnCompletion ?? false,
      },
      paused: options.paused ?? false,
      description: options.description ?? "",
    });
    if (options.catchupWindowMs !== undefined) {
      schedule.catchupWindow = durationFromMs(options.catchupWindowMs);
    }
    const response = await this.call(() =>
      this.schedules.createSchedule({ schedule }, callOptions(options)),
    );
    return required(response.schedule, "schedule");
  }

  /** One schedule with its latest slots (`recentFires`, newest first). */
  async getSchedule(scheduleId: string, options: CallOptions = {}): Promise<Schedule> {
    const response = await this.call(() =>
      this.schedules.getSchedule({ scheduleId }, callOptions(options)),
    );
    return required(response.schedule, "schedule");
  }

  /** Every schedule of the caller, by id (every page). */
  async listSchedules(options: CallOptions = {}): Promise<Schedule[]> {
    const found: Schedule[] = [];
    let pageToken = "";
    do {
      const response = await this.call(() =>
        this.schedules.listSchedules({ pageToken }, callOptions(options)),
      );
      found.push(...response.schedules);
      pageToken = response.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /**
   * Change the settings given in `changes` (the others keep their values); a new cron or time
   * zone counts from the first slot after now. `autoApprove` and `notifyOnCompletion` are sent
   * together: one given alone goes with the other's current value.
   */
  async updateSchedule(
    scheduleId: string,
    changes: UpdateScheduleChanges,
    options: CallOptions = {},
  ): Promise<Schedule> {
    const schedule = create(ScheduleSchema, { scheduleId });
    const paths: string[] = [];
    const set = <K extends keyof Schedule>(path: string, field: K, value: Schedule[K]): void => {
      schedule[field] = value;
      paths.push(path);
    };
    if (changes.cron !== undefined) set("cron", "cron", changes.cron);
    if (changes.timeZone !== undefined) set("time_zone", "timeZone", changes.timeZone);
    if (changes.templateId !== undefined) set("template_id", "templateId", changes.templateId);
    if (changes.version !== undefined) set("template_version", "templateVersion", changes.version);
    if (changes.description !== undefined) {
      set("description", "description", changes.description);
    }
    if (changes.params !== undefined) set("params", "params", changes.params);
    if (changes.overlap !== undefined) set("overlap_policy", "overlapPolicy", changes.overlap);
    if (changes.catchupWindowMs !== undefined) {
      set("catchup_window", "catchupWindow", durationFromMs(changes.catchupWindowMs));
    }
    if (changes.autoApprove !== undefined || changes.notifyOnCompletion !== undefined) {
      const current =
        changes.autoApprove === undefined || changes.notifyOnCompletion === undefined
          ? (await this.getSchedule(scheduleId, options)).options
          : undefined;
      const replacement = create(ExecutionOptionsSchema, {
        autoApprove: changes.autoApprove ?? current?.autoApprove ?? false,
        notifyOnCompletion: changes.notifyOnCompletion ?? current?.notifyOnCompletion ?? false,
      });
      set("options", "options", replacement);
    }
    const request = { schedule, updateMask: { paths } };
    const response = await this.call(() =>
      this.schedules.updateSchedule(request, callOptions(options)),
    );
    return required(response.schedule, "schedule");
  }

  /** Stop a schedule firing until resumeSchedule(); runs already started go on. */
  async pauseSchedule(
    scheduleId: string,
    reason = "",
    options: CallOptions = {},
  ): Promise<Schedule> {
    const response = await this.call(() =>
      this.schedules.pauseSchedule({ scheduleId, reason }, callOptions(options)),
    );
    return required(response.schedule, "schedule");
  }

  /** Resume a paused schedule from the first slot after now. */
  async resumeSchedule(scheduleId: string, options: CallOptions = {}): Promise<Schedule> {
    const response = await this.call(() =>
      this.schedules.resumeSchedule({ scheduleId }, callOptions(options)),
    );
    return required(response.schedule, "schedule");
  }

  /** Delete a schedule and its slot history; the runs it started are kept. */
  async deleteSchedule(scheduleId: string, options: CallOptions = {}): Promise<void> {
    await this.call(() => this.schedules.deleteSchedule({ scheduleId }, callOptions(options)));
  }

  /** Fire a schedule now, once, under its overlap policy; resolves to what became of the slot. */
  async triggerSchedule(scheduleId: string, options: CallOptions = {}): Promise<ScheduleFire> {
    const response = await this.call(() =>
      this.schedules.triggerSchedule({ scheduleId }, callOptions(options)),
    );
    return required(response.fire, "fire");
  }
}

// Codes a restarting or unreachable server answers with; anything else is the caller's to see.
const RECONNECT_ON = new Set<Code>([Code.Unavailable, Code.Canceled]);

/** Waits `ms`, or less if `signal` aborts meanwhile. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((done) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      done();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      done();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function callOptions(options: CallOptions): CallOptions {
  const result: CallOptions = {};
  if (options.timeoutMs !== undefined) result.timeoutMs = options.timeoutMs;
  if (options.signal !== undefined) result.signal = options.signal;
  return result;
}

function toTemplate(template: TemplateLike): Template {
  if (isMessage(template, TemplateSchema)) {
    return template;
  }
  return fromJson(TemplateSchema, template as JsonObject);
}

function required<T>(value: T | undefined, field: string): T {
  if (value === undefined) {
    throw new Error(`the server's response has no ${field}`);
  }
  return value;
}
