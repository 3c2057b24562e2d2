"""The demo's pages: notes from the database, and two plain-text views that show which daemon
process and thread answered (run `curl` on /slow from several terminals to see concurrency)."""

import os
import threading
import time

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from notes.models import Note

# /slow sleeps at most this long, so a typo cannot tie up a daemon thread for an hour.
MAX_SLEEP_S = 30.0


def index(request: HttpRequest) -> HttpResponse:
    context = {
        "notes": Note.objects.all()[:50],
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
    }
    return render(request, "notes/index.html", context)


def slow(request: HttpRequest) -> HttpResponse:
    try:
        seconds = float(request.GET.get("s", "1"))
    except ValueError:
        return HttpResponseBadRequest("s must be a number of seconds\n", content_type="text/plain")
    seconds = min(max(seconds, 0.0), MAX_SLEEP_S)
    time.sleep(seconds)
    name = threading.current_thread().name
    return HttpResponse(
        f"pid {os.getpid()} thread {name} slept {seconds:g}s\n", content_type="text/plain"
    )


def pid(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{os.getpid()}\n", content_type="text/plain")
