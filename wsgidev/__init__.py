"""wsgidev: Apache httpd + mod_wsgi daemon mode as a reloading development server."""

from __future__ import annotations

__version__ = "0.1.0"
