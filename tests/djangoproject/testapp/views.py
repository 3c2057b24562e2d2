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


def queries(request):
    """?n= content types fetched one by one in a loop (an N+1), after the query that lists them;
    the request's queries as Django's DEBUG record counts them."""
    from django.contrib.contenttypes.models import ContentType

    count = int(request.GET.get("n", "1"))
    keys = list(ContentType.objects.order_by("pk").values_list("pk", flat=True)[:count])
    names = []
    for key in keys:
        names.append(ContentType.objects.get(pk=key).model)  # QUERY-IN-LOOP
    return JsonResponse({"names": names, "queries": len(connection.queries)})


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


def tables(request):
    """An HTML page that runs a query and renders a template (the debug toolbar's panels)."""
    from django.contrib.contenttypes.models import ContentType

    return render(request, "testapp/page.html", {"view_mark": ContentType.objects.count()})


def raises(request):
    """Raises three frames down: each frame has its own `level` (the console's tests)."""
    level = 1
    _raises_2(request.GET.get("m", ""))
    return level


def _raises_2(mark):
    level = 2
    _raises_3(mark)
    return level


def _raises_3(mark):
    level = 3
    raise ValueError(f"raised on purpose {mark} at level {level}")
