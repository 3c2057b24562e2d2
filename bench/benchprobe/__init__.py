"""A tiny Django app the benchmark copies into each project it measures.

views.py holds VALUE, the constant each code edit changes; templates/benchprobe/probe.txt holds
the marker each template edit changes. /bench/probe answers with both and the pid that served it.
"""
