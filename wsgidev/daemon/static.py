"""Django's static files from the staticfiles finders, inside the daemon (runserver's way).

StaticFilesHandler wraps the app and serves STATIC_URL from the finders (apps' static/ and
STATICFILES_DIRS), so no collectstatic is needed and edits show at once; only with DEBUG on and
django.contrib.staticfiles installed, as runserver does. The other mode, ``--static-root``, is
Apache's own Alias blocks: see wsgidev/django/static.py on the command side.
"""

from __future__ import annotations

from wsgidev.shared.spec import WSGIApp


def with_static_finders(application: WSGIApp) -> WSGIApp:
    """The app wrapped as runserver wraps it, or unchanged when DEBUG is off or
    django.contrib.staticfiles is not installed."""
    from django.apps import apps
    from django.conf import settings

    if not settings.DEBUG or not apps.is_installed("django.contrib.staticfiles"):
        return application
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    return StaticFilesHandler(application)  # type: ignore[no-any-return]
