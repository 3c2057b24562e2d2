"""Tasks for Django's tasks framework (tests/test_services.py: a db_worker beside the server)."""

import os
import time

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

VERSION = "j1"


@task
def record(n):
    time.sleep(0.05)
    with open(os.environ["TEST_RESULTS"], "a") as out:
        out.write(f"{n} {VERSION}\n")
