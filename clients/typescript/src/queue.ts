// The request side of a client stream: Connect sends what an AsyncIterable yields, and ending
// the iterable half-closes the stream. A queue the worker pushes messages into (its credit
// grants) is that iterable.

export class RequestQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((result: IteratorResult<T, undefined>) => void) | undefined;
  private ended = false;
  private pulls = 0;
  private onPull: ((count: number) => void) | undefined;

  /** Queue a message; ignored once the queue ended (the stream is gone or half-closed). */
  push(item: T): boolean {
    if (this.ended) return false;
    const waiting = this.waiting;
    if (waiting !== undefined) {
      this.waiting = undefined;
      waiting({ value: item, done: false });
    } else {
      this.items.push(item);
    }
    return true;
  }

  /** No more messages: once the queued ones are sent, the iteration ends (the half-close). */
  end(): void {
    this.ended = true;
    if (this.items.length === 0) this.finish();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * `listener(n)` runs each time the stream asks for its n-th message: when it asks for the
   * second, the first has been written to the connection.
   */
  onNext(listener: (count: number) => void): void {
    this.onPull = listener;
  }

  // An async generator, not a bare iterator: Connect needs throw() on the request iterator.
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    try {
      for (;;) {
        this.pulls += 1;
        this.onPull?.(this.pulls);
        const item = this.items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.ended) return;
        const next = await new Promise<IteratorResult<T, undefined>>(
          (resolve) => (this.waiting = resolve),
        );
        if (next.done === true) return;
        yield next.value;
      }
    } finally {
      // The stream stopped reading (it ended, broke, or was cancelled): later pushes drop.
      this.ended = true;
      this.items.length = 0;
      this.waiting = undefined;
    }
  }

  private finish(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.({ value: undefined, done: true });
  }
}
