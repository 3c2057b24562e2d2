"""A WSGI response read whole by wsgidev itself (not by mod_wsgi): its iterable to the end, then
closed, as the WSGI spec asks of a server, whatever the iteration raised."""

from __future__ import annotations

from collections.abc import Iterable


def drain_into(chunks: list[bytes], result: Iterable[bytes]) -> None:
    """Append the iterable's chunks to chunks (where write() put the earlier ones), then close it."""
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
