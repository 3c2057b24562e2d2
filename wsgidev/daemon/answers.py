"""When this daemon process last answered a request: the one clock a retiring process reports.

Its Exit event carries it (restart.py), so that wsgidev start's "Reloaded in" figure counts to
the last answer that had the old code, not to the exit, which comes 0.1-0.3 s later. Kept apart
from appimport.py, which sets it per request, so that restart.py (also run under a system
Apache with a hand-written script) needs nothing else of the app's import.
"""

from __future__ import annotations

import time

_last_answer_at = 0.0


def note() -> None:
    """A request's answer left now (a float store: no lock needed across threads)."""
    global _last_answer_at
    _last_answer_at = time.time()


def last_answer_at() -> float:
    """When the app last returned a response in this process (0.0: it never did)."""
    return _last_answer_at
