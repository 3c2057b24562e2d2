"""No tables: django.setup() imports this module, and the benchmark's models.py edits change
MODEL_VALUE below (the probe answers with it), to time a reload of code Django's setup loads."""

MODEL_VALUE = "m-000-initial"
