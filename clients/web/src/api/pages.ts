// A list read to its end (List* calls answer a page at a time), again when the token changes.

import { useEffect, useState } from "react";

import { useAuth } from "./auth";
import { problemOf, type Problem } from "./errors";

export type PageReader<T> = (
  pageToken: string,
  signal: AbortSignal,
) => Promise<{ items: readonly T[]; next: string }>;

/** Every item of a list (null until read), or why it could not be read. */
export function useEveryPage<T>(read: PageReader<T>): { items: T[] | null; problem: Problem | null } {
  const { token } = useAuth();
  const [items, setItems] = useState<T[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    const load = async () => {
      const all: T[] = [];
      let pageToken = "";
      do {
        const answer = await read(pageToken, abort.signal);
        all.push(...answer.items);
        pageToken = answer.next;
      } while (pageToken);
      setItems(all);
      setProblem(null);
    };
    load().catch((error: unknown) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [token]); // eslint-disable-line react-hooks/exhaustive-deps
  return { items, problem };
}
