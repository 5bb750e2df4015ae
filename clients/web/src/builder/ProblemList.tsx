// Every problem of the template, found here or by ValidateTemplate: a click shows the step or
// gate it is about.

import type { Located } from "./problems";

const SHOWN = 100;

export function ProblemList({ list, checking, onShow }: { list: readonly Located[]; checking: boolean; onShow: (step: string) => void }) {
  return (
    <section className="panel problems" aria-label="Problems" data-testid="problem-list" aria-busy={checking}>
      <h2>
        {list.length === 0 ? "No problems" : `${list.length} problem${list.length === 1 ? "" : "s"}`}
        {checking && <span className="muted small">checking…</span>}
      </h2>
      {list.length > 0 && (
        <ul>
          {list.slice(0, SHOWN).map((p, i) => (
            <li key={i} data-testid="problem">
              {p.step ? (
                <button type="button" className="link mono" onClick={() => p.step && onShow(p.step)}>
                  {p.field}
                </button>
              ) : (
                <code>{p.field}</code>
              )}{" "}
              {p.description}
            </li>
          ))}
          {list.length > SHOWN && <li className="muted">and {list.length - SHOWN} more</li>}
        </ul>
      )}
    </section>
  );
}
