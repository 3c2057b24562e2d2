from benchprobe import views
from django.urls import path

urlpatterns = [
    path("probe", views.probe),
    path("modules", views.modules),
]
