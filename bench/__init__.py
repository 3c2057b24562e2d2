"""Reload benchmark: wsgidev against runserver, mod_wsgi-express and gunicorn (run bench/run.py)."""
