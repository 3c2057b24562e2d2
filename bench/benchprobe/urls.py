from benchprobe import views
from django.urls import path

urlpatterns = [
    path("probe", views.probe),
    path("dirs", views.dirs),
    path("page", views.page),
]
