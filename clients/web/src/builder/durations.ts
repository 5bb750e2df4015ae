// Durations as people type them ("30s", "1h30m", "1.5s", "250ms", "2d") and back: the form
// the CLI and the README use, rather than protobuf's "5400s".

import { create } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

/** The duration a text names; undefined for an empty text; null when it names none. */
export function parseDuration(text: string): Duration | undefined | null {
  const trimmed = text.replace(/\s+/g, "");
  if (trimmed === "") return undefined;
  let seconds = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < trimmed.length) {
    const start = PART.lastIndex;
    const found = PART.exec(trimmed);
    if (found === null || found.index !== start) return null;
    seconds += Number(found[1]) * (UNITS[found[2] ?? ""] ?? Number.NaN);
  }
  if (!Number.isFinite(seconds)) return null;
  const whole = Math.floor(seconds);
  return create(DurationSchema, {
    seconds: BigInt(whole),
    nanos: Math.round((seconds - whole) * 1e9),
  });
}

export function formatDuration(value: Duration | undefined): string {
  if (value === undefined) return "";
  let rest = Number(value.seconds);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  const fraction = value.nanos / 1e9;
  if (rest > 0 || fraction > 0 || parts.length === 0) {
    parts.push(fraction > 0 ? `${Number((rest + fraction).toFixed(3))}s` : `${rest}s`);
  }
  return parts.join("");
}

export const DURATION_HINT = 'like "30s", "1h30m" or "250ms"';
