"""A few notes, so the front page shows the database working on a fresh `migrate`."""

from django.db import migrations

WELCOME = [
    ("Welcome to the wsgidev demo", "This page is read from SQLite by a mod_wsgi daemon process."),
    (
        "Edit a view and save",
        "Change notes/views.py: the daemons restart and the next request runs the new code.",
    ),
    (
        "See the concurrency",
        "Open /slow?s=3 in several tabs: the answers name different processes and threads.",
    ),
]


def add_welcome_notes(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.bulk_create(
        # Newest first on the page: insert in reverse so the welcome note tops the list.
        Note(title=title, body=body)
        for title, body in reversed(WELCOME)
    )


def remove_welcome_notes(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.filter(title__in=[title for title, _ in WELCOME]).delete()


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [migrations.RunPython(add_welcome_notes, remove_welcome_notes)]
