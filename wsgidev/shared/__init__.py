"""What the `wsgidev` command (wsgidev/*.py) and the code inside the mod_wsgi daemons
(wsgidev/daemon/) share: leaves that import nothing of either side.

spec.py         the entry spec and restart plan the command writes into the entry script
serverroot.py   the files of wsgidev start's server root both sides use, and the leader lock
protocol.py     every event and control datagram between processes, as types
events.py       how an event reaches the error log, and a person's words for it
sessionwire.py  a debugger session's messages
processes.py    whether a process runs; a file as a terminal line shows it
globpattern.py  --watch and --exclude glob patterns
mounts.py       which folders send no change notifications

Entry scripts an earlier wsgidev wrote import the spec's names from here.
"""

from wsgidev.shared.spec import DebuggerSpec, EntrySpec, MonitorSpec, RestartPlan

__all__ = ["DebuggerSpec", "EntrySpec", "MonitorSpec", "RestartPlan"]
