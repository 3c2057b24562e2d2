"""A debugger session's messages between a daemon and wsgidev start's terminal: a JSON object
on a line (wsgidev/daemon/debugsession.py and wsgidev/debugbridge.py)."""

from __future__ import annotations

import json
import socket
from typing import IO, Any


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """One message of a debugger session: a JSON object on a line (both ends use these two)."""
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def read_message(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message of a debugger session; None at the end of the connection."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return {"op": "bad"}
    return message if isinstance(message, dict) else {"op": "bad"}
