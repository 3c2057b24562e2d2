"""Hand-over between two daemon groups: how `wsgidev start` brings new code in by default.

The floor of the ``process`` recipe is Apache's parent: it notices a dead daemon only in a
maintenance loop that sleeps a second between looks. So `wsgidev start` runs two daemon groups
of ``processes`` x ``threads`` each, and Apache sends every request to the group the route file
names (present: the second group). The other group is a standby: its processes are started and
idle, with nothing of the app imported.

On a change, the first monitor of the serving group to see it leads a hand-over:

1. it sends ``go`` to every standby process (a datagram to the socket each one binds in the
   server root); each one imports the app - the new code - and answers ``ready``, or
   ``restarting`` when a file it had already imported changed too;
2. once all have answered it flips the route: the next request goes to the new code;
3. it sends ``retire`` to its own group: mod_wsgi lets their requests in flight finish, and
   Apache starts them again in its own time, as the next standby.

Requests never wait for a process to start, and none is refused: both groups' sockets stay
bound the whole time (unlike a graceful restart of Apache, which rebinds them). A request that
reaches a standby process first (queued just before a flip) imports the app then, new code too.
The second monitor of the serving group to see the change finds the lock dated after its import
and waits to be retired. A standby process whose own files changed restarts itself, unseen.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wsgidev import events
from wsgidev.monitor import preload
from wsgidev.monitor.base import log
from wsgidev.monitor.restart import restart_process

ROUTE_NAME = "route-b"  # present: the second group serves
CONTROL_DIR = "ctl"  # one datagram socket per daemon process: <group letter>.<pid>
LOCK_NAME = "handover.lock"
LETTERS = ("a", "b")
# How long a hand-over waits for the standby processes to import the app; a slower one is
# flipped to anyway, and imports on the first request it gets.
IMPORT_TIMEOUT_S = 60.0
# A standby group with no process yet (Apache is starting it after the last hand-over) is
# waited for this long; after that the flip goes ahead and requests queue on its socket.
EMPTY_GROUP_WAIT_S = 3.0
POLL_S = 0.02


def prepare_state_dir(state_dir: Path) -> None:
    """Create what the daemons share: the control folder and a lock dated long before any of them."""
    (state_dir / CONTROL_DIR).mkdir(exist_ok=True)
    lock = state_dir / LOCK_NAME
    lock.touch()
    os.utime(lock, ns=(0, 0))


def serving_group(state_dir: Path, groups: Sequence[str]) -> str:
    """The group Apache sends requests to now."""
    return groups[1] if (state_dir / ROUTE_NAME).exists() else groups[0]


class Handover:
    """This daemon process's part in hand-overs: its control socket, and the swap it may lead."""

    def __init__(self, state_dir: str, groups: Sequence[str], group: str) -> None:
        if len(groups) != 2 or group not in groups:
            raise ValueError(f"process group {group!r} is not one of {list(groups)}")
        self.state_dir = Path(state_dir)
        self.groups = (groups[0], groups[1])
        self.group = group
        self.letter = LETTERS[self.groups.index(group)]
        self.control_dir = self.state_dir / CONTROL_DIR
        self.address = self.control_dir / f"{self.letter}.{os.getpid()}"
        self.loaded_ns: int | None = None  # when this process began importing the app
        self.retired = threading.Event()
        self._load: Callable[[], object] | None = None
        self._stale: Callable[[], list[str]] = list
        self._thread: threading.Thread | None = None
        self._warm = False
        self._warmed = False
        self._activate: Callable[[], None] | None = None
        self._django = False
        # django.setup() failed while warming: unless a file changed since (then the process is
        # stale), importing the app fails the same way, and it cannot be set up twice.
        self.warm_error: BaseException | None = None
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()  # a pid reused after a process that ended without cleaning up
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.address))

    def serving(self) -> bool:
        """Whether Apache sends requests to this process's group."""
        return serving_group(self.state_dir, self.groups) == self.group

    def mark_loading(self) -> None:
        """Note that the app is being imported now (a later hand-over covers this process)."""
        if self.loaded_ns is None:
            self.loaded_ns = time.time_ns()

    def listen(
        self,
        load: Callable[[], object],
        stale: Callable[[], list[str]],
        *,
        warm: bool = False,
        django: bool = False,
        activate: Callable[[], None] | None = None,
    ) -> None:
        """Answer hand-over messages from a daemon thread: load imports the app (once); warm:
        first import the libraries the serving process recorded (preload.py), and set Django
        up where django is true; activate: called once this process has taken over (it starts
        watching files)."""
        self._load, self._stale, self._activate = load, stale, activate
        self._warm, self._django = warm, django
        # Registered after the monitor's quick exit (atexit runs last-in first-out), so it runs.
        atexit.register(self._remove_address)
        self._thread = threading.Thread(target=self._listen, name="wsgidev-handover", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and remove the socket (tests; a daemon process just exits)."""
        if self._socket.fileno() < 0:
            return  # closed already
        if self._thread is not None:
            with contextlib.suppress(OSError):
                self._socket.sendto(b'{"op": "close"}', str(self.address))
            self._thread.join(timeout=5)
        self._socket.close()
        self._remove_address()

    def _remove_address(self) -> None:
        with contextlib.suppress(OSError):
            self.address.unlink()

    # -- the serving side ---------------------------------------------------------------------

    def on_change(self, files: list[str]) -> None:
        """The monitor's on_change: lead a hand-over, or restart where this process is a standby."""
        if not self.serving() or self.loaded_ns is None:
            restart_process(files)  # nobody's requests wait on this process
            return
        try:
            with (self.state_dir / LOCK_NAME).open("r+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # A sibling led a hand-over after this process imported: the new group is
                # newer than this process's code, and the retire message is on its way.
                led = os.fstat(lock.fileno()).st_mtime_ns >= self.loaded_ns
                if not led and self.serving():
                    os.utime(lock.fileno())
                    self._lead(files)
        except OSError as exc:
            log(f"hand-over failed ({exc}); restarting this process")
            restart_process(files)
            return
        if not self.retired.wait(IMPORT_TIMEOUT_S + 5):
            restart_process(files)  # the leader went away before retiring this group

    def _lead(self, files: list[str]) -> None:
        started = time.time()
        standby = LETTERS[1 - LETTERS.index(self.letter)]
        reply = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        reply_path = self.control_dir / f"reply.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            reply_path.unlink()
        reply.bind(str(reply_path))
        go = {"op": "go", "reply": str(reply_path)}
        answers: dict[str, str] = {}
        try:
            members = self._wait_for_members(standby, set(), 1)
            for _ in range(2):
                sent = {pid for pid in members if self._send(standby, pid, go)}
                answers.update(self._collect(reply, sent))
                stale = list(answers.values()).count("restarting")
                if not stale or "ready" in answers.values():
                    break
                # Every standby had imported a file that changed (settings.py, a models.py):
                # keep serving the old code while Apache starts them again, warmed afresh.
                asked = {int(pid) for pid in answers}
                members = self._wait_for_members(standby, asked, stale)
        finally:
            reply.close()
            with contextlib.suppress(FileNotFoundError):
                reply_path.unlink()
        route = self.state_dir / ROUTE_NAME
        if standby == "b":
            route.touch()
        else:
            route.unlink(missing_ok=True)
        events.emit(
            "handover",
            to=self.groups[LETTERS.index(standby)],
            answers=answers,
            seconds=round(time.time() - started, 4),
        )
        for pid in self._members(self.letter):
            self._send(self.letter, pid, {"op": "retire"})

    def _members(self, letter: str) -> set[int]:
        pids = set()
        for path in self.control_dir.glob(f"{letter}.*"):
            pid_text = path.name.partition(".")[2]
            if pid_text.isdigit():
                pids.add(int(pid_text))
        return pids

    def _wait_for_members(self, letter: str, known: set[int], count: int) -> set[int]:
        """At least count processes of the group not in known, or what there is by the deadline."""
        deadline = time.monotonic() + EMPTY_GROUP_WAIT_S
        while len(members := self._members(letter) - known) < count:
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        return members

    def _send(self, letter: str, pid: int, message: dict[str, Any]) -> bool:
        path = self.control_dir / f"{letter}.{pid}"
        try:
            self._socket.sendto(json.dumps(message).encode(), str(path))
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            # The process is gone (an exit skips clean-up): its socket file is litter.
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
            return False
        except OSError as exc:
            log(f"cannot reach daemon process {pid}: {exc}")
            return False

    def _collect(self, reply: socket.socket, waiting: set[int]) -> dict[str, str]:
        """Each standby's answer by pid, until all answered, died, or the import timeout."""
        answers: dict[str, str] = {}
        deadline = time.monotonic() + IMPORT_TIMEOUT_S
        reply.settimeout(0.1)
        while waiting and time.monotonic() < deadline:
            try:
                message = json.loads(reply.recv(4096))
            except TimeoutError:
                for pid in [pid for pid in waiting if not _alive(pid)]:
                    waiting.discard(pid)
                    answers[str(pid)] = "gone"
                continue
            except ValueError:
                continue
            pid = int(message.get("pid", 0))
            if pid in waiting:
                waiting.discard(pid)
                answers[str(pid)] = str(message.get("op"))
        answers.update((str(pid), "timeout") for pid in waiting)
        return answers

    # -- every process: the control socket ----------------------------------------------------

    def record_modules(self, *, tell_standby: bool = False) -> None:
        """Tell the next standby processes what to preload: this process's library modules."""
        try:
            preload.record(str(self.state_dir))
        except OSError as exc:
            log(f"cannot record modules to preload: {exc}")
            return
        if tell_standby:  # the standby group started with us, before there was a record
            standby = LETTERS[1 - LETTERS.index(self.letter)]
            for pid in self._members(standby):
                self._send(standby, pid, {"op": "warm"})

    def _preload(self) -> None:
        if not self._warm or self._warmed or self.loaded_ns is not None:
            return
        names = preload.recorded(str(self.state_dir))
        if names is None:
            return  # the serving group is still importing; it sends "warm" when done
        self._warmed = True
        warmed = preload.preload(names, django=self._django)
        self.warm_error = warmed.django_error
        events.emit(
            "preloaded",
            imported=warmed.imported,
            seconds=round(warmed.seconds, 3),
            stopped_at=warmed.stopped_at,
            django_error=repr(warmed.django_error) if warmed.django_error else None,
        )

    def _listen(self) -> None:
        self._preload()
        while True:
            try:
                message = json.loads(self._socket.recv(4096))
            except ValueError:
                continue
            except OSError:
                return  # closed
            op = message.get("op")
            if op == "close":
                return
            if op == "warm":
                self._preload()
            elif op == "go":
                self._go(str(message.get("reply", "")))
            elif op == "retire" and self.loaded_ns is not None:
                self.record_modules()  # with what requests imported since
                restart_process([])  # mod_wsgi finishes the requests in flight, then exits
                self.retired.set()

    def _go(self, reply_path: str) -> None:
        stale = self._stale()
        if stale:
            answer = "restarting"  # it imported old code before: only a new process is clean
        else:
            answer = "ready"
            assert self._load is not None
            self._load()  # an import error still loads: the error page is what serves
            self.record_modules()
        with contextlib.suppress(OSError):
            self._socket.sendto(json.dumps({"op": answer, "pid": os.getpid()}).encode(), reply_path)
        if stale:
            log(f"standby process {os.getpid()} is stale ({stale[0]} changed); restarting it")
            restart_process(stale)
        elif self._activate is not None:
            self._activate()  # after the answer: watching ~1,000 folders takes a moment


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
