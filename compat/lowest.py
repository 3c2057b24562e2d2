"""Constraints pinning wsgidev's own dependencies to the lowest versions pyproject.toml declares.

    python3 compat/lowest.py > constraints.txt

The hard dependencies and those of the extras a user may add (https, hide-env), each at its
`>=` bound, where its marker applies to this machine (Linux, this Python). The `lowest`
configuration installs `.[test]` under these constraints, so the whole suite runs against
exactly the floor wsgidev claims.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from wsgidev.requirements import EXTRAS, parse  # noqa: E402  (markers read as doctor reads them)


def main() -> int:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    for requirement in filter(None, map(parse, lines)):
        if requirement.lowest:
            print(f"{requirement.name}=={requirement.lowest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
