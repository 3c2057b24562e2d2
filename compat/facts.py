"""What a compatibility run runs on, as wsgidev itself finds it: printed as JSON.

    python compat/facts.py [--expect-pip-httpd]

Run with the configuration's own Python. --expect-pip-httpd fails (exit 1) unless wsgidev finds
mod_wsgi-httpd's Apache, and that httpd's libapr resolves into its own folder only through the
library path wsgidev sets (ldd without and with it).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from wsgidev.apache import apache_version, find_apache


def ldd_libapr(httpd: str, env: dict[str, str] | None) -> str:
    """Where the loader finds libapr-1 for httpd ('not found', or ldd's error)."""
    result = subprocess.run(
        ["ldd", httpd], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        if "libapr-1.so" in line and "=>" in line:
            return line.split("=>", 1)[1].strip().split(" (")[0]
        if "error while loading shared libraries" in line:
            return line.split(": ", 1)[-1].strip()
    return "libapr-1 not listed"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect-pip-httpd", action="store_true")
    args = parser.parse_args()
    apache = find_apache()
    env = apache.environ()
    facts = {
        "python": platform.python_version(),
        "django": importlib.metadata.version("Django"),
        "mod_wsgi": importlib.metadata.version("mod_wsgi"),
        "apache": apache_version(apache.httpd, env),
        "httpd": apache.httpd,
        "library_path": apache.library_path,
        "mime_types": apache.mime_types,
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform()),
        "dependencies": {
            name: _version(name)
            for name in ("Jinja2", "inotify_simple", "cryptography", "platformdirs", "setproctitle")
        },
    }
    problems = []
    if args.expect_pip_httpd:
        bare = {k: v for k, v in os.environ.items() if k != apache.library_path_var}
        facts["libapr_without_library_path"] = ldd_libapr(apache.httpd, bare)
        facts["libapr_with_library_path"] = ldd_libapr(apache.httpd, env)
        if "mod_wsgi_packages" not in apache.httpd or not apache.library_path:
            problems.append(f"wsgidev finds {apache.httpd}, not mod_wsgi-httpd's Apache")
        if not facts["libapr_with_library_path"].startswith(apache.library_path or "-"):
            problems.append(f"libapr resolves to {facts['libapr_with_library_path']}")
        if facts["libapr_without_library_path"].startswith(apache.library_path or "-"):
            problems.append("httpd finds its libapr without the library path: nothing tested")
    print(json.dumps(facts, indent=2))
    for problem in problems:
        print(f"compat: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
