"""The tables. A run's event log is the truth; runs/step_runs/gate_results are its projection."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from sluice.engine import analytics

metadata = sa.MetaData()

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)
UNFINISHED = sa.text("status IN ('PENDING', 'RUNNING', 'PAUSED')")

# One row per server process on the database (several servers on PostgreSQL): its heartbeat.
# Every run the server leases lives as long as this row: one renewal a heartbeat for all of
# them, and no write of a run waits for (or deadlocks with) a renewal. `expires_at` is set by
# the database's clock.
servers = sa.Table(
    "servers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("started_at", Time, nullable=False, server_default=sa.func.now()),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("body", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    # Set by DeleteTemplate: the version is gone for callers, but its number is never reused.
    sa.Column("deleted_at", Time),
)

# The templates runs ran, one row per distinct body: every run of a template version (or of
# the same inline template) shares one, where a copy in each run row cost about 2 KB a run.
# Rows are only ever added: a key names one body for good.
template_snapshots = sa.Table(
    "template_snapshots",
    metadata,
    # SHA-256 (hex) of the body as canonical JSON (sorted keys, no spaces): see rows.snapshot.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("body", Json, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    # The template the run runs, as it was when the run was created.
    sa.Column("template_key", sa.String(64), nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("options", Json, nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("pause_reason", sa.Text, nullable=False, default=""),
    sa.Column("paused_gate_id", sa.String(64), nullable=False, default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("updated_at", Time),
    sa.Column("last_sequence", sa.Integer, nullable=False),
    # Compare-and-set guard: every commit moves it by one; a stale writer's UPDATE matches nothing.
    sa.Column("version", sa.Integer, nullable=False),
    # NULL when the caller sent none (NULLs never collide in the unique index).
    sa.Column("request_id", sa.String(200)),
    # request_id of the ExecuteWorkflow call that started the run: its retries get the run back.
    sa.Column("start_request_id", sa.String(200)),
    # Fingerprints of the CreateWorkflow / ExecuteWorkflow requests that carried those ids: a
    # request_id reused for a different request is refused (NULL for runs stored before 0002).
    sa.Column("request_hash", sa.String(64)),
    sa.Column("start_request_hash", sa.String(64)),
    # The lease of the server driving the run (several servers on PostgreSQL; unused on
    # SQLite): the server's id and the claim's number; every write checks both. The lease
    # lives as long as its server's row in `servers`: a RUNNING run whose server's row expired
    # (or with no server) is claimed by another.
    sa.Column("lease_owner", sa.String(32)),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    # A rerun (RerunWorkflow): the run it reruns and the step it reruns from (NULL: none). No
    # foreign key: the original may be deleted (DeleteWorkflow, retention) and the rerun stays.
    sa.Column("rerun_of", sa.String(36)),
    sa.Column("rerun_from_step", sa.String(64)),
    # The run's trace (W3C Trace Context fields, see Run.trace_context), written once as the run
    # is created; NULL when tracing was off then.
    sa.Column("trace_context", Json),
    # ListWorkflows: every filter (owner always; status, template, create time) is a range of
    # one of these, in the list's order (newest first), so a page reads only its own rows
    # (several statuses: one range each, merged).
    sa.Index("ix_runs_owner_created", "owner", "created_at", "id"),
    sa.Index("ix_runs_owner_status_created", "owner", "status", "created_at", "id"),
    sa.Index("ix_runs_owner_template_created", "owner", "template_id", "created_at", "id"),
    sa.Index(
        "ix_runs_owner_template_status_created",
        "owner",
        "template_id",
        "status",
        "created_at",
        "id",
    ),
    # Recovery and PENDING expiry (by status, oldest first); retention (by end time).
    sa.Index("ix_runs_status_created", "status", "created_at"),
    sa.Index("ix_runs_ended", "ended_at"),
    sa.UniqueConstraint("owner", "request_id", name="uq_runs_owner_request_id"),
    sa.ForeignKeyConstraint(
        ["template_key"], ["template_snapshots.key"], name="fk_runs_template_key"
    ),
    # A claim's runs (RUNNING, of a dead server or none) and a server's unfinished runs.
    sa.Index("ix_runs_lease_owner", "lease_owner", postgresql_where=UNFINISHED),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("step_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("output", Json),
    sa.Column("error", sa.Text, nullable=False, default=""),
    # While RETRYING: when the next attempt is due; while a sleep step runs: when it wakes.
    sa.Column("wake_at", Time),
)

gate_results = sa.Table(
    "gate_results",
    metadata,
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("gate_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("observed_value", sa.Float),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("decided_at", Time),
    # While AWAITING_APPROVAL with a timeout: when the timeout acts.
    sa.Column("deadline", Time),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    # 1, 2, 3, ... per run; the primary key makes a duplicate impossible.
    sa.Column("sequence", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False, default=""),
    sa.Column("gate_id", sa.String(64), nullable=False, default=""),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("run_status", sa.String(16), nullable=False),
    sa.Column("details", Json, nullable=False),
)

# Records that post/notify steps publish, written in the same transaction as the step's
# completion (a transactional outbox: a relay may deliver them elsewhere later).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_outbox_run", "run_id"),
)

# A run's durable waits (a step's next attempt: key "retry:<step>"): the server driving the run
# fires them from memory, and a server that takes the run over reads them here.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("fire_at", Time, nullable=False),
    sa.Index("ix_timers_fire_at", "fire_at"),
)

# Calls on a run that another server drives, for that server to carry out; the outcome is
# written in the same transaction as the change it made.
run_commands = sa.Table(
    "run_commands",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("args", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False, server_default=sa.func.now()),
    sa.Column("done_at", Time),
    sa.Column("outcome", Json),
    sa.Index("ix_run_commands_run", "run_id"),
)

# The worker side of each "task" step's current attempt (WorkerService), one row per step: a
# new attempt replaces it. Queued with the STEP_STARTED that starts the attempt (same
# transaction), then leased to a worker (`delivery` moves on each time: the task token names
# it), then completed / failed / timed out, or cancelled with the step. Any server changes it,
# by compare-and-set; the server driving the run follows it and commits the step's outcome.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column(
        "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("step_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("task_type", sa.String(100), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("delivery", sa.Integer, nullable=False),
    sa.Column("queued_at", Time, nullable=False),
    sa.Column("start_by", Time, nullable=False),
    sa.Column("run_timeout", sa.Float, nullable=False),  # seconds
    sa.Column("input", Json, nullable=False),
    sa.Column("worker", sa.String(200)),
    sa.Column("activated_at", Time),
    sa.Column("expires_at", Time),
    sa.Column("acked", sa.Boolean, nullable=False),
    sa.Column("result", Json),
    # What workers poll: an owner's queued tasks of some types, oldest first.
    sa.Index(
        "ix_tasks_queued",
        "owner",
        "task_type",
        "queued_at",
        postgresql_where=sa.text("state = 'queued'"),
        sqlite_where=sa.text("state = 'queued'"),
    ),
    # What the queue's gauges count: the tasks held by workers, by owner and type.
    sa.Index(
        "ix_tasks_active",
        "owner",
        "task_type",
        postgresql_where=sa.text("state = 'active'"),
        sqlite_where=sa.text("state = 'active'"),
    ),
)

# Schedules (ScheduleService): each starts runs of a template on a cron. `next_fire_at` is the
# next slot; the server that claims a due schedule (SKIP LOCKED on PostgreSQL) records its due
# slots in `schedule_fires` and moves `next_fire_at` on, in one transaction.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("overlap", sa.String(16), nullable=False),
    sa.Column("catchup_seconds", sa.Float, nullable=False),
    sa.Column("options", Json, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("pause_reason", sa.Text, nullable=False, default=""),
    # NULL while paused (or when the cron has no slot left).
    sa.Column("next_fire_at", Time),
    sa.Column("last_fire_at", Time),
    sa.Column("last_run_id", sa.String(36), nullable=False, default=""),
    # The slot that started last_run_id: a slower server finishing an older slot leaves it.
    sa.Column("last_run_slot", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # What every server's loop asks: the due schedules, and the earliest next slot.
    sa.Index("ix_schedules_next_fire", "next_fire_at"),
)

# Every slot of a schedule that came due, once: the primary key (schedule, slot) is what makes
# a slot fire once however many servers look. PENDING from the claim until its run is created
# and started (by request id `schedule/<id>/<slot>`, so a second try gets the same run).
schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("schedule_id", sa.String(64), primary_key=True),
    sa.Column("slot", Time, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("triggered", sa.Boolean, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("recorded_at", Time, nullable=False),
    sa.ForeignKeyConstraint(
        ["owner", "schedule_id"],
        ["schedules.owner", "schedules.id"],
        ondelete="CASCADE",
        name="fk_schedule_fires_schedule",
    ),
    # Slots a crashed server claimed but did not finish.
    sa.Index(
        "ix_schedule_fires_pending",
        "recorded_at",
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    ),
)

# A 64-bit id on PostgreSQL; on SQLite an INTEGER PRIMARY KEY, which is the rowid.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Runs that ended and are not yet in `analytics_sums`: one row written in the run's terminal
# commit with what the run adds (`counts`: sluice.engine.analytics' Counts, computed from the
# run in memory), folded into the sums shortly after (and before every GetAnalytics) by
# whichever server deletes the row first. Rows queued by migration 0011 for the runs that had
# ended before it have no counts: the fold computes them from the run's stored rows.
analytics_queue = sa.Table(
    "analytics_queue",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("ended_at", Time, nullable=False),
    # [kind, subject, outcome, seconds or null, attempts, kind, ...] (analytics.encode);
    # NULL: read the run's rows.
    sa.Column("counts", Json),
)

# GetAnalytics' sums: what the runs that ended in an hour (span_seconds 3600), a 6-hour span
# (21600) or a day (86400, UTC) added, per owner, template version and (kind, subject): a Tally
# of sluice.engine.analytics (counts by outcome, attempts, durations observed, their sum and a
# log-scale histogram, h0 being bucket MIN_BUCKET). A window reads its days, 6-hour spans and
# edge hours through the primary key (owner, span, start: a range), a few dozen rows per
# template whatever number of runs it covers. SQLite keeps the rows in that key's order
# (WITHOUT ROWID), so each range is read in one pass.
analytics_sums = sa.Table(
    "analytics_sums",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("span_seconds", sa.Integer, primary_key=True),
    sa.Column("span_start", Time, primary_key=True),
    sa.Column("template_id", sa.String(64), primary_key=True),
    sa.Column("template_version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # run, step or gate
    sa.Column("subject", sa.Text, primary_key=True),  # step or gate type; "" for a run
    *(
        sa.Column(name, sa.Float if name == "seconds" else sa.Integer, nullable=False)
        for name in analytics.VALUES
    ),
    sqlite_with_rowid=False,
)
