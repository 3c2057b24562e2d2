import os

from django.apps import AppConfig
from django.conf import settings


def record_connection(sender, connection, **kwargs):
    """One line (the pid) per database connection opened, for the CONN_MAX_AGE test."""
    with open(settings.BASE_DIR / "connections.log", "a") as log:
        log.write(f"{os.getpid()}\n")


class TestAppConfig(AppConfig):
    name = "testapp"

    def ready(self):
        from django.db.backends.signals import connection_created

        connection_created.connect(record_connection)
