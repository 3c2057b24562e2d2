"""Settings of the Django project tests/test_django.py copies into tmp_path.

A few values come from TEST_* variables so one project serves every test."""

import json
import os
import sys
from pathlib import Path

if os.environ.get("TEST_BREAK_SETTINGS"):
    raise RuntimeError("these settings are broken on purpose")

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "wsgidev-tests-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "wsgidev.django",
    "testapp",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
# TEST_BROWSER_RELOAD=1: django-browser-reload installed as its README says.
BROWSER_RELOAD = bool(os.environ.get("TEST_BROWSER_RELOAD"))
if BROWSER_RELOAD:
    INSTALLED_APPS.append("django_browser_reload")
    MIDDLEWARE.append("django_browser_reload.middleware.BrowserReloadMiddleware")
# TEST_TOOLBAR=FOLDER: django-debug-toolbar installed as its README says, imported from FOLDER
# (a version other than the venv's; "installed": the venv's own).
TOOLBAR = os.environ.get("TEST_TOOLBAR", "")
if TOOLBAR:
    if TOOLBAR != "installed":
        sys.path.insert(0, TOOLBAR)
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1"]
    # A store chosen by the project (bench/devtools.py: the toolbar's own MemoryStore).
    if os.environ.get("TEST_TOOLBAR_STORE"):
        DEBUG_TOOLBAR_CONFIG = {"TOOLBAR_STORE_CLASS": os.environ["TEST_TOOLBAR_STORE"]}
# TEST_TASKS=FOLDER: django-tasks-db (Django's tasks framework, its database backend), imported
# from FOLDER; Django 6 has the framework itself, Django 5.2 takes the django-tasks backport.
if os.environ.get("TEST_TASKS"):
    import importlib.util

    sys.path.insert(0, os.environ["TEST_TASKS"])
    if importlib.util.find_spec("django.tasks") is None:
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# TEST_DJANGO_EXTENSIONS=1: runserver_plus (bench/devtools.py).
if os.environ.get("TEST_DJANGO_EXTENSIONS"):
    INSTALLED_APPS.append("django_extensions")
ROOT_URLCONF = "testsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "testsite.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "CONN_MAX_AGE": int(os.environ.get("TEST_CONN_MAX_AGE", "0")),
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "collected"
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

WSGIDEV = json.loads(os.environ.get("TEST_WSGIDEV", "{}"))
