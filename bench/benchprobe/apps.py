from django.apps import AppConfig


class BenchProbeConfig(AppConfig):
    name = "benchprobe"
    default_auto_field = "django.db.models.BigAutoField"
