"""Django integration: the runwsgidev command, static files, and the few settings wsgidev reads.

Importable without Django (the daemon and `wsgidev start` import parts of it); the parts that
need Django import it where they run.
"""
