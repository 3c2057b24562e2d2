"""The Django app that provides `manage.py runwsgidev`."""

from __future__ import annotations

from django.apps import AppConfig


class WsgidevConfig(AppConfig):  # type: ignore[misc]
    """Add "wsgidev.django" to INSTALLED_APPS to get the runwsgidev command."""

    name = "wsgidev.django"
    label = "wsgidev"
    verbose_name = "wsgidev"
