"""The wheel carries the templates: a fresh venv with the built wheel renders every output."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

RENDER = """
import pathlib, sys
from wsgidev import render
from wsgidev.apache import ApacheInstall
from wsgidev.options import Options
from wsgidev.privileges import RunAs
from wsgidev.runplan import RunPlan
from wsgidev.target import Target

folder = render.templates_dir()
assert pathlib.Path(sys.prefix) in folder.parents, folder
target = Target(kind="module", label="m:app", project_dir="/srv/p", module="m")
apache = ApacheInstall(httpd="/opt/httpd/bin/httpd", modules_dir="/m", mod_wsgi_so="/m/w.so",
                       python_home=sys.prefix, python_dylib="", mime_types="/opt/httpd/conf/types")
options = Options(working_dir="/srv/p", processes=3, threads=4)
plan = RunPlan(options=options, target=target, apache=apache, run_as=RunAs(mode="self"),
               env=options.env, static=options.static, allow_host=options.allow_host)
entry = pathlib.Path("/srv/p/.wsgidev/entry.wsgi")
print(render.render_standalone(plan, pathlib.Path("/r")))
print(render.render_apache(plan, entry))
print(render.render_express(plan, entry))
print(render.render_entry(plan))
"""


@pytest.mark.timeout(300)
def test_wheel_installs_templates_and_renders(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        timeout=240,
    )
    wheel = next(dist.glob("wsgidev-*.whl"))
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            str(wheel),
            "jinja2",
            "markupsafe",
        ],
        check=True,
        timeout=240,
    )
    result = subprocess.run(
        [str(python), "-c", RENDER], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert 'WSGIDaemonProcess "wsgidev-p' in result.stdout
    assert "processes=3 threads=4" in result.stdout
    assert "start-server /srv/p/.wsgidev/entry.wsgi" in result.stdout
    assert "wsgidev.daemon.entry.load(" in result.stdout
