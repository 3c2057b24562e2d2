"""WSGI entry point of the wsgidev demo site (what `wsgidev start` and other servers load)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demosite.settings")

application = get_wsgi_application()
