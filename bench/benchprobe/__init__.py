"""A tiny Django app the benchmark copies into each project it measures.

views.py holds VALUE, the constant each code edit changes; models.py holds MODEL_VALUE, which
the rapid scenario's models.py edits change (django.setup() imports it); templates/benchprobe/
probe.txt holds the marker each template edit changes. /bench/probe answers with all three, the
pid that served it and its thread count; /bench/dirs counts the directories a reloader watches.
"""
