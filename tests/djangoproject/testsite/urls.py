from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index),
    path("log", views.log),
    path("db", views.db),
    path("write", views.write),
    path("queries", views.queries),
    path("sleep", views.sleep),
    path("pause", views.pause),
    path("page", views.page),
    path("secure", views.secure),
    path("tables", views.tables),
    path("raises", views.raises),
]
if settings.BROWSER_RELOAD:
    urlpatterns.append(path("__reload__/", include("django_browser_reload.urls")))
if settings.TOOLBAR:
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += debug_toolbar_urls()
