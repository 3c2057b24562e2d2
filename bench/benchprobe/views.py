"""The benchmark edits the VALUE line below in place, by rename, by delete-and-create, or with
an older mtime, and times how long until every response carries the new value."""

import json
import os
import sys
import threading

from benchprobe import models
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.autoreload import autoreload_started

VALUE = "v-000-initial"


def probe(request: HttpRequest) -> HttpResponse:
    """Which process answered, the code it runs, and its threads (counted by the kernel)."""
    marker = render_to_string("benchprobe/probe.txt").strip()
    tasks = len(os.listdir("/proc/self/task"))
    return HttpResponse(
        f"pid={os.getpid()} value={VALUE} model={models.MODEL_VALUE} tasks={tasks} "
        f"threads={threading.active_count()} {marker}\n",
        content_type="text/plain",
    )


def page(request: HttpRequest) -> HttpResponse:
    """An HTML page for the browser scenario: the VALUE line, a template, a stylesheet."""
    from django.shortcuts import render

    return render(request, "benchprobe/page.html", {"value": VALUE})


def dirs(request: HttpRequest) -> HttpResponse:
    """The directories a reloader watches in this process: the folders of every module file in
    sys.modules, plus every folder of what Django's autoreload_started receivers register
    (templates: ``watch_dir(dir, "**/*")``; translations: ``watch_dir(locale, "**/*.mo")`` for
    the project's and third-party apps' locale folders): asked of the receivers themselves,
    then walked. wsgidev's monitor counts the same way (`--log-level info`: "watches N files
    in M folders")."""
    module_dirs = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            module_dirs.add(os.path.dirname(os.path.realpath(path)))
    collector = _WatchCollector()
    autoreload_started.send(sender=collector)
    template_dirs = _tree(collector.roots, "**/*")
    locale_dirs = _tree(collector.roots, "**/*.mo")
    counts = {
        "dirs": len(module_dirs | template_dirs | locale_dirs),
        "module_dirs": len(module_dirs),
        "template_dirs": len(template_dirs),
        "locale_dirs": len(locale_dirs),
        "modules": len(sys.modules),
    }
    return HttpResponse(json.dumps(counts) + "\n", content_type="application/json")


class _WatchCollector:
    """Stands in for Django's reloader: records what the receivers ask it to watch."""

    def __init__(self) -> None:
        self.roots: list[tuple[str, str]] = []

    def watch_dir(self, path: object, glob: str) -> None:
        self.roots.append((os.path.realpath(os.fspath(path)), glob))  # type: ignore[arg-type]


def _tree(roots: list[tuple[str, str]], glob: str) -> set[str]:
    """Every existing folder under the roots registered with this glob, the roots included."""
    found: set[str] = set()
    for root, pattern in roots:
        if pattern != glob or not os.path.isdir(root):
            continue
        for parent, subdirs, _ in os.walk(root):
            found.add(parent)
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and d != "__pycache__"]
    return found
