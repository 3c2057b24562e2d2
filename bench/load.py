"""Loopback load: a few clients looping on GET /bench/probe, every answer kept with its times."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

HOST = "127.0.0.1"
PROBE_PATH = "/bench/probe"
REQUEST_TIMEOUT_S = 10.0
# Each client pauses between requests so the load leaves the server's reload some CPU on a
# two-core machine (the rapid scenario's clients do not); it pauses longer after an error so a
# refused port is not hammered.
PAUSE_S = 0.01
PAUSE_AFTER_ERROR_S = 0.02


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was sent and answered (time.monotonic), and what came back."""

    client: int
    start: float
    end: float
    status: int  # 0 when no HTTP answer came back
    error: str | None = None
    pid: int | None = None
    value: str | None = None
    model: str | None = None
    tpl: str | None = None
    tasks: int | None = None  # threads of the process that answered (/proc/self/task)

    @property
    def failed(self) -> bool:
        """Refused, reset, timed out, or a 5xx: what a person reloading the page would see."""
        return self.error is not None or self.status >= 500


def parse_probe(body: str) -> dict[str, str]:
    """'pid=12 value=v-001 tpl=t-000' -> {'pid': '12', ...}."""
    return dict(part.split("=", 1) for part in body.split() if "=" in part)


def get(port: int, path: str, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, str]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "reset"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    return type(exc).__name__


class Load:
    """`clients` threads, each looping on GET until stop(); samples grow as answers arrive."""

    def __init__(self, port: int, clients: int = 4, pause_s: float = PAUSE_S) -> None:
        self.port = port
        self.clients = clients
        self.pause_s = pause_s
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(n,), daemon=True, name=f"client-{n}")
            for n in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_event.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 2)

    def _loop(self, client: int) -> None:
        while not self._stop_event.is_set():
            start = time.monotonic()
            try:
                status, body = get(self.port, PROBE_PATH)
            except (OSError, http.client.HTTPException) as exc:
                self.samples.append(Sample(client, start, time.monotonic(), 0, _error_kind(exc)))
                self._stop_event.wait(PAUSE_AFTER_ERROR_S)
                continue
            end = time.monotonic()
            fields = parse_probe(body) if status == 200 else {}
            pid, tasks = fields.get("pid", ""), fields.get("tasks", "")
            self.samples.append(
                Sample(
                    client,
                    start,
                    end,
                    status,
                    pid=int(pid) if pid.isdigit() else None,
                    value=fields.get("value"),
                    model=fields.get("model"),
                    tpl=fields.get("tpl"),
                    tasks=int(tasks) if tasks.isdigit() else None,
                )
            )
            if self.pause_s:
                self._stop_event.wait(self.pause_s)

    def failures(self) -> Counter[str]:
        """Failed requests by kind ('refused', 'reset', 'timeout', 'http 500', ...)."""
        return Counter(s.error or f"http {s.status}" for s in list(self.samples) if s.failed)


def shows(sample: Sample, field: str, wanted: str | frozenset[str]) -> bool:
    """Whether the sample is a 200 whose `field` is wanted (or one of the wanted values: a later
    edit's value shows an earlier edit too, when a request crosses the next save)."""
    if sample.status != 200:
        return False
    got = getattr(sample, field)
    return got == wanted if isinstance(wanted, str) else got in wanted


def every_client_on(
    samples: list[Sample], first_index: int, clients: int, field: str, wanted: str
) -> bool:
    """Whether each client's latest answer since samples[first_index] is `wanted` (a cheap test
    to run while waiting; settled_at() gives the time afterwards)."""
    latest: dict[int, bool] = {}
    for index in range(len(samples) - 1, first_index - 1, -1):
        sample = samples[index]
        if sample.client not in latest:
            latest[sample.client] = shows(sample, field, wanted)
            if len(latest) == clients:
                break
    return len(latest) == clients and all(latest.values())


def settled_at(
    samples: list[Sample],
    clients: int,
    since: float,
    until: float,
    field: str,
    wanted: str | frozenset[str],
) -> float | None:
    """When every client started getting `wanted` for good: per client, the answer time of the
    first wanted answer after its last unwanted (or failed) one, sent in [since, until); the
    latest of those over all clients. None if some client never settled."""
    settled: list[float] = []
    for client in range(clients):
        mine = [s for s in samples if s.client == client and since <= s.start < until]
        mine.sort(key=lambda s: s.start)
        first_good: float | None = None
        for sample in mine:
            if shows(sample, field, wanted):
                if first_good is None:
                    first_good = sample.end
            else:
                first_good = None
        if first_good is None:
            return None
        settled.append(first_good)
    return max(settled) if settled else None
