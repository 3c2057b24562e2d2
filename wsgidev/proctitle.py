"""Keep `--env NAME=VALUE` values out of the command line other users can read.

/proc/PID/cmdline is world-readable: `ps` shows every local user the values a developer typed
after --env. Once started, wsgidev rewrites its own command line with each value replaced by
`***`, through setproctitle (the maintained package that knows each platform's argv memory;
Python itself cannot write there). What the kernel showed before that rewrite, a few
milliseconds, stays racy: --env-file keeps a secret off the command line altogether.
setproctitle is the `hide-env` extra; without it the values stay visible and `wsgidev start`
says so in one line.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Sequence

HIDDEN = "***"


def redacted(argv: Sequence[str], env: Iterable[tuple[str, str]]) -> list[str] | None:
    """argv with the value of each NAME=VALUE given in it hidden; None when there is none."""
    secrets = {f"{name}={value}": f"{name}={HIDDEN}" for name, value in env if value}
    changed = False
    words: list[str] = []
    for word in argv:
        for plain, hidden in secrets.items():
            if word == plain or word.endswith("=" + plain):
                word = word[: len(word) - len(plain)] + hidden
                changed = True
                break
        words.append(word)
    return words if changed else None


def hide_env_values(env: Iterable[tuple[str, str]]) -> bool:
    """Rewrite this process's command line without the --env values it was given; False when
    there were values to hide and setproctitle (the `hide-env` extra) is not installed."""
    words = redacted(sys.orig_argv, env)
    if words is None:
        return True
    try:
        # Only now: it is a C extension, and most starts have nothing to hide.
        import setproctitle
    except ImportError:
        return False
    setproctitle.setproctitle(shlex.join(words))
    return True
