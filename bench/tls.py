"""The HTTPS scenario: throughput of one wsgidev server over HTTP/1.1, HTTPS (HTTP/1.1) and
HTTPS with HTTP/2, the same clients in one run (httpx; h2 for HTTP/2).

`wsgidev start --https` on the project, its certificate from a local CA made in the scratch
folder (XDG_DATA_HOME), and CLIENTS threads each with its own client (keep-alive connections,
as a browser has) looping on /bench/probe for DURATION_S per protocol.
"""

from __future__ import annotations

import dataclasses
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import HOST, PROBE_PATH
from bench.projects import Project
from bench.servers import SERVERS, Paths, ServerProcess, free_port

CLIENTS = 8
DURATION_S = 10.0
WARM_S = 2.0


@dataclass(kw_only=True)
class TlsResult:
    """Requests per second by protocol (and failures), for one server."""

    rates: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def run_tls(
    project: Project, paths: Paths, scratch: Path, progress: Callable[[str], None]
) -> TlsResult:
    import httpx

    result = TlsResult()
    https_port = free_port()
    data = scratch / "tls-data"

    def command(project: Project, port: int, paths: Paths) -> list[str]:
        return [*SERVERS["wsgidev"].command(project, port, paths), "--https", str(https_port)]

    spec = dataclasses.replace(
        SERVERS["wsgidev"], key="wsgidev-https", command=command,
        env=(("XDG_DATA_HOME", str(data)),),
    )  # fmt: skip
    server = ServerProcess(spec, project, paths, scratch / "tls-wsgidev.log")
    try:
        server.start()
        server.wait_ready()
        context = ssl.create_default_context(cafile=str(data / "wsgidev" / "ca" / "rootCA.pem"))
        runs = {
            "HTTP/1.1": (f"http://{HOST}:{server.port}{PROBE_PATH}", False),
            "HTTPS, HTTP/1.1": (f"https://localhost:{https_port}{PROBE_PATH}", False),
            "HTTPS, HTTP/2": (f"https://localhost:{https_port}{PROBE_PATH}", True),
        }
        for label, (url, http2) in runs.items():
            rate, failed = _measure(url, http2, context, httpx)
            result.rates[label], result.failures[label] = rate, failed
            progress(f"{label}: {rate:.0f} requests/s, {failed} failed")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return result


def _measure(url: str, http2: bool, context: ssl.SSLContext, httpx: object) -> tuple[float, int]:
    counts = [0] * CLIENTS
    failed = [0] * CLIENTS
    start = time.monotonic() + WARM_S
    stop = start + DURATION_S

    def client(index: int) -> None:
        with httpx.Client(http2=http2, verify=context, timeout=10) as session:  # type: ignore[attr-defined]
            while (now := time.monotonic()) < stop:
                try:
                    ok = session.get(url).status_code == 200
                except Exception:
                    ok = False
                if now >= start:
                    counts[index] += ok
                    failed[index] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / DURATION_S, sum(failed)


def tls_table(result: TlsResult) -> str:
    """The table, with each protocol's rate relative to plain HTTP/1.1."""
    if result.error and not result.rates:
        return f"HTTPS scenario failed: {result.error}\n"
    base = result.rates.get("HTTP/1.1")
    lines = [
        f"#### HTTPS and HTTP/2: throughput ({CLIENTS} keep-alive clients, {DURATION_S:.0f} s each)",
        "",
        "| protocol | requests/s | vs HTTP/1.1 | failed |",
        "|---|---|---|---|",
    ]
    for label, rate in result.rates.items():
        ratio = f"{rate / base:.2f}×" if base else "–"
        lines.append(f"| {label} | {rate:,.0f} | {ratio} | {result.failures.get(label, 0)} |")
    return "\n".join(lines) + "\n"
