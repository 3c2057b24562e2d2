"""URLs of the wsgidev demo site."""

from django.contrib import admin
from django.urls import path
from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("slow", views.slow, name="slow"),
    path("pid", views.pid, name="pid"),
    path("admin/", admin.site.urls),
]
