// Small pieces every page uses: a status badge, an error box, times and durations.

import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

import type { Problem } from "./api/errors";
import { tone } from "./status";

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span className={`status tone-${tone(status)}`} data-testid={testId} data-status={status}>
      {status.replace(/_/g, " ")}
    </span>
  );
}

export function ErrorBox({ problem, onClose }: { problem: Problem | null; onClose?: () => void }) {
  if (problem === null) return null;
  return (
    <div className="error-box" role="alert" data-testid="error">
      <div>
        <strong>{problem.code}</strong> {problem.message}
      </div>
      {problem.violations.length > 0 && (
        <ul>
          {problem.violations.map((v, i) => (
            <li key={i}>
              {v.field && <code>{v.field}</code>} {v.description}
            </li>
          ))}
        </ul>
      )}
      {onClose && (
        <button type="button" className="link" onClick={onClose} aria-label="Dismiss the error">
          dismiss
        </button>
      )}
    </div>
  );
}

export function time(value: Timestamp | undefined): string {
  if (value === undefined) return "-";
  const date = new Date(Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6));
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** As the CLI prints durations: 1.25s, 3m05s, 2h10m. */
export function duration(value: Duration | undefined): string {
  if (value === undefined) return "-";
  const seconds = Number(value.seconds) + value.nanos / 1e9;
  if (seconds < 60) return `${seconds.toFixed(2)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

export function Json({ value, testId }: { value: unknown; testId?: string }) {
  let text = JSON.stringify(value, null, 2) ?? "";
  // An output can be a megabyte: the page shows the start of it.
  const limit = 20_000;
  if (text.length > limit) text = `${text.slice(0, limit)}\n… (${text.length - limit} more characters)`;
  return (
    <pre className="json" data-testid={testId}>
      {text}
    </pre>
  );
}
