"""A real HTTP server on 127.0.0.1 for webhook and `http` step tests (an outside service, so
a fake is fine): it records every request and answers what the test set, and can hold
requests so a test can see how many a client has in flight at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How long a held request waits before it is answered anyway, so a broken client fails its
# test instead of hanging it.
HOLD_LIMIT_SECONDS = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query
    headers: Message  # names match in any case
    body: bytes


@dataclass
class Receiver:
    port: int = 0
    status: int = 200
    # Status by request path (without the query), over `status`: one step fails, others not.
    statuses: dict[str, int] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = b'{"ok": true}'
    # Seconds to wait before answering (timeout tests).
    delay: float = 0.0
    # Hold every request until release() / release_all(), or until this many are in flight.
    hold: bool = False
    answer_when_in_flight: int = 0
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    open_connections: int = 0
    _passes: int = 0
    _open: bool = False
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def allow(self) -> str:
        """The SLUICE_WEBHOOK_ALLOW entry for this receiver."""
        return f"127.0.0.1:{self.port}"

    def release(self, count: int = 1) -> None:
        with self._lock:
            self._passes += count
            self._lock.notify_all()

    def release_all(self) -> None:
        with self._lock:
            self._open = True
            self._lock.notify_all()

    async def wait_for(self, condition: Callable[[Receiver], bool], timeout: float = 10) -> None:
        """Poll until `condition(self)` holds; TimeoutError naming what was seen otherwise."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"receiver: {len(self.requests)} requests, {self.in_flight} in flight"
                )
            await asyncio.sleep(0.01)

    async def replace_one_then_release_all(self, held: int) -> None:
        """With `hold` set: wait until `held` requests are in, answer one (a client limited to
        `held` connections gets one back), wait for the request that takes its place, then
        answer every request."""
        await self.wait_for(lambda r: len(r.requests) >= held)
        self.release()
        await self.wait_for(lambda r: len(r.requests) >= held + 1)
        self.release_all()

    def _take(self, request: Request) -> None:
        """Record `request`, hold or delay it as set; it stops counting as in flight before its
        answer is written, so the client cannot send its next request before that."""
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.answer_when_in_flight and self.in_flight >= self.answer_when_in_flight:
                self._open = True
            self._lock.notify_all()
            if self.hold or self.answer_when_in_flight:
                self._lock.wait_for(lambda: self._open or self._passes > 0, HOLD_LIMIT_SECONDS)
                if not self._open and self._passes > 0:
                    self._passes -= 1
        if self.delay:
            self._stopped.wait(self.delay)
        with self._lock:
            self.in_flight -= 1
            self._lock.notify_all()

    def _count_connection(self, change: int) -> None:
        with self._lock:
            self.open_connections += change


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections when many clients connect at once.
    request_queue_size = 1024
    daemon_threads = True


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

        def handle(self) -> None:
            state._count_connection(1)
            try:
                super().handle()
            finally:
                state._count_connection(-1)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            state._take(Request(self.command, self.path, self.headers, body))
            status = state.statuses.get(self.path.partition("?")[0], state.status)
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                for name, value in state.headers.items():
                    self.send_header(name, value)
                body = b"" if status in (204, 304) else state.body  # no body, by HTTP
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout tests)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state._stopped.set()
        state.release_all()
        server.shutdown()
        server.server_close()
        thread.join()
