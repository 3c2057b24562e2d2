"""The ring of daemon groups a hand-over goes round (handover.py), as files in the server root:
which group Apache sends requests to (the route files), which processes each group has (the
control socket each one binds, ctl/<group index>.<pid>), which of them a debugger session holds
(ctl/held.<group index>.<pid>), and the datagrams sent to them."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from wsgidev.daemon.monitor.base import log
from wsgidev.shared import protocol
from wsgidev.shared.processes import pid_alive
from wsgidev.shared.serverroot import CONTROL_DIR, HELD_PREFIX, route_name

# A standby group with no process yet (Apache is starting it after the last hand-over) is
# waited for this long; after that it is passed over.
EMPTY_GROUP_WAIT_S = 3.0
POLL_S = 0.02


def serving_index(server_root: Path, count: int) -> int:
    """The index of the group Apache sends requests to now."""
    for index in range(count - 1, 0, -1):
        if (server_root / route_name(index)).exists():
            return index
    return 0


def serving_group(server_root: Path, groups: Sequence[str]) -> str:
    """The group Apache sends requests to now."""
    return groups[serving_index(server_root, len(groups))]


def route_to(server_root: Path, index: int, count: int) -> None:
    """Send requests to group index: its file first, then remove the higher and lower ones."""
    if index:
        (server_root / route_name(index)).touch()
    for other in range(count - 1, 0, -1):
        if other != index:
            (server_root / route_name(other)).unlink(missing_ok=True)


class Ring:
    """The groups' processes as one process of the ring sees them; it sends from sock (its
    own control socket)."""

    def __init__(self, server_root: Path, sock: socket.socket) -> None:
        self.control_dir = server_root / CONTROL_DIR
        self._socket = sock

    def members(self, index: int) -> set[int]:
        """The pids of the group's processes that listen (a stopping one until it is gone)."""
        pids = set()
        for path in self.control_dir.glob(f"{index}.*"):
            pid_text = path.name.partition(".")[2]
            if pid_text.isdigit():
                pids.add(int(pid_text))
        return pids

    def held(self, index: int) -> set[int]:
        """The group's processes that are stopping but held by a debugger session."""
        pids = set()
        for path in self.control_dir.glob(f"{HELD_PREFIX}.{index}.*"):
            pid_text = path.name.rpartition(".")[2]
            if pid_text.isdigit() and pid_alive(int(pid_text)):
                pids.add(int(pid_text))
        return pids

    def wait_for_members(
        self, index: int, wait_s: float = 0.0, exclude: set[int] | None = None
    ) -> set[int]:
        """The group's processes, waiting for one to appear (Apache may be starting them)."""
        deadline = time.monotonic() + (wait_s or EMPTY_GROUP_WAIT_S)
        while True:
            members = self.members(index) - (exclude or set())
            if members or time.monotonic() >= deadline:
                return members
            time.sleep(POLL_S)

    def send(self, index: int, pid: int, message: protocol.Control) -> bool:
        """Send message to a process of group index; whether it was there to take it."""
        path = self.control_dir / f"{index}.{pid}"
        try:
            self._socket.sendto(protocol.pack(message), str(path))
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            # The process is gone (an exit skips clean-up): its socket file is litter.
            if not pid_alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
            return False
        except OSError as exc:
            log(f"cannot reach daemon process {pid}: {exc}")
            return False


def collect(reply: socket.socket, waiting: set[int], timeout_s: float) -> dict[str, str]:
    """Each standby's answer to go by pid, until all answered, died ("gone"), or timeout_s
    passed ("timeout")."""
    answers: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    reply.settimeout(0.1)
    while waiting and time.monotonic() < deadline:
        try:
            message = protocol.unpack(reply.recv(4096))
        except TimeoutError:
            for pid in [pid for pid in waiting if not pid_alive(pid)]:
                waiting.discard(pid)
                answers[str(pid)] = "gone"
            continue
        if isinstance(message, protocol.Answer) and message.pid in waiting:
            waiting.discard(message.pid)
            answers[str(message.pid)] = message.answer
    answers.update((str(pid), "timeout") for pid in waiting)
    return answers
