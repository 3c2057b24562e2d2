"""The benchmark edits the VALUE line below in place, by rename, by delete-and-create, or with
an older mtime, and times how long until every response carries the new value."""

import os
import sys

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

VALUE = "v-000-initial"


def probe(request: HttpRequest) -> HttpResponse:
    marker = render_to_string("benchprobe/probe.txt").strip()
    return HttpResponse(f"pid={os.getpid()} value={VALUE} {marker}\n", content_type="text/plain")


def modules(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{len(sys.modules)}\n", content_type="text/plain")
