"""The one exception type for problems a user can fix."""

from __future__ import annotations


class WsgidevError(Exception):
    """A problem the user can fix: printed as one line by the CLI, never as a traceback."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem
