import logging
import os
import threading
import time

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)
VIEW_MARK = "view-1"  # tests edit this line and watch the page follow


def index(request):
    return JsonResponse({"pid": os.getpid(), "thread": threading.get_ident()})


def log(request):
    marker = request.GET.get("m", "")
    print("printed by the view", marker)
    logger.warning("logged by the view %s", marker)
    return HttpResponse(status=int(request.GET.get("status", "200")))


def db(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return index(request)


def write(request):
    """Write to the database (a container's daemon user must be able to); the count so far,
    the view's mark and the value of a named environment variable."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS hits (n INTEGER)")
        cursor.execute("INSERT INTO hits VALUES (1)")
        cursor.execute("SELECT COUNT(*) FROM hits")
        (count,) = cursor.fetchone()
    name = request.GET.get("env", "")
    return JsonResponse(
        {"count": count, "view_mark": VIEW_MARK, "env": os.environ.get(name) if name else None}
    )


def sleep(request):
    time.sleep(float(request.GET.get("s", "0.5")))
    return index(request)


def pause(request):
    value = 41
    breakpoint()
    return HttpResponse(f"value={value}")


def page(request):
    return render(request, "testapp/page.html", {"view_mark": VIEW_MARK})


def secure(request):
    return JsonResponse({"secure": request.is_secure(), "host": request.get_host()})
