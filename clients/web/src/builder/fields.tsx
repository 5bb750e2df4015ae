// Labelled form fields of the builder's editors. A field whose text must parse (a duration, a
// number) keeps what is typed and reports a value only once it parses, saying inline what is
// wrong until then; its editor remounts it (by key) when another item is selected.

import { useState, type ReactNode } from "react";

import type { Duration } from "@bufbuild/protobuf/wkt";

import { DURATION_HINT, formatDuration, parseDuration } from "./durations";

interface Base {
  label: string;
  testId: string;
  problems?: readonly string[];
  hint?: ReactNode;
}

function Problems({ problems, testId }: { problems?: readonly string[]; testId: string }) {
  if (!problems || problems.length === 0) return null;
  return (
    <span className="field-problems" data-testid={`${testId}-problems`} role="alert">
      {problems.join("; ")}
    </span>
  );
}

function Field({ label, testId, problems, hint, children }: Base & { children: ReactNode }) {
  return (
    <label className={`field${problems?.length ? " bad" : ""}`}>
      <span className="field-label">{label}</span>
      {children}
      {hint && <span className="field-hint">{hint}</span>}
      <Problems problems={problems} testId={testId} />
    </label>
  );
}

export function TextField(props: Base & { value: string; onChange: (value: string) => void; placeholder?: string; mono?: boolean; autoFocus?: boolean }) {
  return (
    <Field {...props}>
      <input
        type="text"
        className={props.mono ? "mono" : undefined}
        value={props.value}
        placeholder={props.placeholder}
        autoFocus={props.autoFocus}
        spellCheck={false}
        aria-invalid={props.problems?.length ? true : undefined}
        onChange={(e) => props.onChange(e.target.value)}
        data-testid={props.testId}
      />
    </Field>
  );
}

export function TextArea(props: Base & { value: string; onChange: (value: string) => void; rows?: number }) {
  return (
    <Field {...props}>
      <textarea
        className="mono"
        rows={props.rows ?? 6}
        value={props.value}
        spellCheck={false}
        aria-invalid={props.problems?.length ? true : undefined}
        onChange={(e) => props.onChange(e.target.value)}
        data-testid={props.testId}
      />
    </Field>
  );
}

export function SelectField<T extends string | number>(
  props: Base & { value: T; options: readonly (readonly [T, string])[]; onChange: (value: T) => void },
) {
  return (
    <Field {...props}>
      <select
        value={String(props.value)}
        aria-invalid={props.problems?.length ? true : undefined}
        onChange={(e) => {
          const chosen = props.options.find(([value]) => String(value) === e.target.value);
          if (chosen) props.onChange(chosen[0]);
        }}
        data-testid={props.testId}
      >
        {props.options.map(([value, text]) => (
          <option key={String(value)} value={String(value)}>
            {text}
          </option>
        ))}
      </select>
    </Field>
  );
}

export function CheckField(props: { label: string; testId: string; checked: boolean; onChange: (checked: boolean) => void }) {
  return (
    <label className="check">
      <input type="checkbox" checked={props.checked} onChange={(e) => props.onChange(e.target.checked)} data-testid={props.testId} />
      {props.label}
    </label>
  );
}

/** A text that must parse into a value before it is reported. */
function Parsed<V>(props: Base & { initial: string; parse: (text: string) => V | null; onChange: (value: V) => void; wrong: string; placeholder?: string }) {
  const [text, setText] = useState(props.initial);
  const bad = props.parse(text) === null;
  return (
    <Field {...props} problems={bad ? [props.wrong, ...(props.problems ?? [])] : props.problems}>
      <input
        type="text"
        className="mono"
        value={text}
        placeholder={props.placeholder}
        aria-invalid={bad || props.problems?.length ? true : undefined}
        onChange={(e) => {
          setText(e.target.value);
          const value = props.parse(e.target.value);
          if (value !== null) props.onChange(value);
        }}
        data-testid={props.testId}
      />
    </Field>
  );
}

export function DurationField(props: Base & { value: Duration | undefined; onChange: (value: Duration | undefined) => void; placeholder?: string }) {
  return (
    <Parsed<Duration | undefined>
      {...props}
      initial={formatDuration(props.value)}
      parse={parseDuration}
      wrong={`not a duration: write it ${DURATION_HINT}`}
    />
  );
}

const parseNumber = (text: string): number | null => (text.trim() === "" || !Number.isFinite(Number(text)) ? null : Number(text));

export function NumberField(props: Base & { value: number; onChange: (value: number) => void }) {
  return <Parsed<number> {...props} initial={String(props.value)} parse={parseNumber} wrong="not a number" />;
}
