import logging
import os
import threading
import time

from django.db import connection
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


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


def sleep(request):
    time.sleep(float(request.GET.get("s", "0.5")))
    return index(request)


def pause(request):
    value = 41
    breakpoint()
    return HttpResponse(f"value={value}")
