from django.contrib import admin
from django.urls import path
from testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index),
    path("log", views.log),
    path("db", views.db),
    path("sleep", views.sleep),
    path("pause", views.pause),
]
