"""Constraints pinning wsgidev's own dependencies to the lowest versions pyproject.toml declares.

    python3 compat/lowest.py > constraints.txt

The hard dependencies and those of the extras a user may add (https, hide-env), each at its
`>=` bound, where its marker applies to this machine (Linux, this Python). The `lowest`
configuration installs `.[test]` under these constraints, so the whole suite runs against
exactly the floor wsgidev claims.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

EXTRAS = ("https", "hide-env")


def applies(marker: str) -> bool:
    """Whether a marker of the forms pyproject.toml uses holds here."""
    for clause in filter(None, (c.strip() for c in marker.split(" and "))):
        key, op, value = re.match(r"(\w+)\s*(==|!=|<|>=)\s*['\"]([^'\"]*)['\"]", clause).groups()  # type: ignore[union-attr]
        here = sys.platform if key == "sys_platform" else tuple(sys.version_info[:2])
        wanted = value if key == "sys_platform" else tuple(int(p) for p in value.split("."))
        if not {
            "==": here == wanted,
            "!=": here != wanted,
            "<": here < wanted,
            ">=": here >= wanted,
        }[op]:  # type: ignore[operator]
            return False
    return True


def main() -> int:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"
    ]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    for line in lines:
        requirement, _, marker = line.partition(";")
        name, _, lowest = requirement.partition(">=")
        if lowest and applies(marker):
            print(f"{name.strip()}=={lowest.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
