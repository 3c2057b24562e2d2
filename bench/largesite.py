"""Grow a `wagtail start` site to the size of a real Wagtail site of some age.

A real site serves from 2,500 or more watched directories (the folders of its modules, plus the
template and locale folders Django's autoreloader registers); `wagtail start` alone gives ~280.
The rest comes the way a real site gets it:

- Wagtail's optional apps and more of django.contrib, with their URLs (API v2, sitemaps,
  admindocs, translations);
- three hand-written apps with page models, a snippet, templates, a locale folder and
  migrations (news, events, people);
- generated section apps, one per part of the site, each a package tree: features/<feature>/
  and features/<feature>/<part>/ packages of __init__.py, models.py (an abstract model) and
  views.py, plus templatetags, templates and locale folders. As in a real app, the app's
  models.py imports the models modules (so django.setup() does), and its urls.py the views.

Every module is imported when the site serves its first request, as in a real site.
"""

from __future__ import annotations

from pathlib import Path

# The generated sections: names a large organisation's site has.
SECTIONS = ("research", "services")  # a site's own code stays a small part of what it imports
FEATURES = ("listing", "detail", "filters", "feeds", "widgets", "forms", "api", "promos")
PARTS = ("blocks", "panels", "serializers", "services")
HAND_APPS = ("news", "events", "people")

SETTINGS_TAIL = """
# Grown by bench/largesite.py: Wagtail's optional apps, more of django.contrib, project apps.
INSTALLED_APPS = [
    *{hand_apps!r},
    *{sections!r},
    *INSTALLED_APPS,
    "wagtail.contrib.settings",
    "wagtail.contrib.routable_page",
    "wagtail.contrib.table_block",
    "wagtail.contrib.typed_table_block",
    "wagtail.contrib.search_promotions",
    "wagtail.contrib.simple_translation",
    "wagtail.contrib.styleguide",
    "wagtail.contrib.sitemaps",
    "wagtail.contrib.frontend_cache",
    "wagtail.locales",
    "wagtail.api.v2",
    "rest_framework",
    "django.contrib.sites",
    "django.contrib.sitemaps",
    "django.contrib.humanize",
    "django.contrib.flatpages",
    "django.contrib.redirects",
    "django.contrib.admindocs",
]
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.common.CommonMiddleware"),
                  "django.middleware.locale.LocaleMiddleware")
TEMPLATES[0]["OPTIONS"]["context_processors"].append(
    "wagtail.contrib.settings.context_processors.settings")
SITE_ID = 1
WAGTAIL_I18N_ENABLED = True
LANGUAGES = WAGTAIL_CONTENT_LANGUAGES = [("en", "English"), ("fr", "French"), ("de", "German")]
LANGUAGE_CODE = "en"
LOCALE_PATHS = [PROJECT_DIR / "locale"]
"""

URLS_TAIL = """
# Grown by bench/largesite.py: the optional apps' URLs and one include per project app.
from django.urls import include as _grown_include, path as _grown_path  # noqa: E402
from wagtail.api.v2.router import WagtailAPIRouter  # noqa: E402
from wagtail.api.v2.views import PagesAPIViewSet  # noqa: E402
from wagtail.contrib.sitemaps.views import sitemap  # noqa: E402
from wagtail.documents.api.v2.views import DocumentsAPIViewSet  # noqa: E402
from wagtail.images.api.v2.views import ImagesAPIViewSet  # noqa: E402

api_router = WagtailAPIRouter("wagtailapi")
api_router.register_endpoint("pages", PagesAPIViewSet)
api_router.register_endpoint("images", ImagesAPIViewSet)
api_router.register_endpoint("documents", DocumentsAPIViewSet)
urlpatterns[:0] = [
    _grown_path("api/v2/", api_router.urls),
    _grown_path("sitemap.xml", sitemap),
    _grown_path("django-admin/doc/", _grown_include("django.contrib.admindocs.urls")),
    *[_grown_path(f"{{app}}/", _grown_include(f"{{app}}.urls")) for app in {apps!r}],
]
"""

APPS_PY = """from django.apps import AppConfig


class {camel}Config(AppConfig):
    name = "{app}"
    default_auto_field = "django.db.models.BigAutoField"
"""

PACKAGE_INIT = '"""{title}."""\n'

# A nested package's models: an abstract model the section's pages mix in, and its ordering.
PART_MODELS = '''"""{title}: the fields its pages share."""

from django.db import models

ORDERING = ("-published", "title")


class {camel}Fields(models.Model):
    title = models.CharField(max_length=255)
    summary = models.TextField(blank=True)
    published = models.DateField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ORDERING

    def __str__(self) -> str:
        return self.title
'''

PART_VIEWS = '''"""{title}: its page."""

from django.http import HttpRequest
from django.template.response import TemplateResponse

from .models import ORDERING, {camel}Fields


def index(request: HttpRequest) -> TemplateResponse:
    fields = [field.name for field in {camel}Fields._meta.fields]
    context = {{"section": "{title}", "ordering": ORDERING, "fields": fields}}
    return TemplateResponse(request, "{app}/index.html", context)
'''

TAGS = """from django import template

register = template.Library()


@register.simple_tag
def {app}_heading(text: str) -> str:
    return text.replace("_", " ").title()
"""

TEMPLATE = """{{% load {app}_tags %}}<h1>{{% {app}_heading section %}}</h1>
<ul>{{% for field in fields %}}<li>{{{{ field }}}}</li>{{% endfor %}}</ul>
"""

LOCALE_PO = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'

HAND_MODELS = {
    "news": """from django.db import models
from modelcluster.contrib.taggit import ClusterTaggableManager
from modelcluster.fields import ParentalKey
from taggit.models import TaggedItemBase
from wagtail import blocks
from wagtail.admin.panels import FieldPanel
from wagtail.contrib.routable_page.models import RoutablePageMixin, route
from wagtail.fields import StreamField
from wagtail.images.blocks import ImageBlock
from wagtail.models import Page
from wagtail.search import index


class NewsIndexPage(RoutablePageMixin, Page):
    intro = models.TextField(blank=True)
    content_panels = [*Page.content_panels, FieldPanel("intro")]

    @route(r"^tag/(?P<tag>[-\\w]+)/$")
    def by_tag(self, request, tag):
        return self.render(request, context_overrides={"tag": tag})


class NewsPageTag(TaggedItemBase):
    content_object = ParentalKey("NewsPage", related_name="tagged_items", on_delete=models.CASCADE)


class NewsPage(Page):
    date = models.DateField("Post date")
    body = StreamField([
        ("heading", blocks.CharBlock(form_classname="title")),
        ("paragraph", blocks.RichTextBlock()),
        ("image", ImageBlock()),
        ("quote", blocks.BlockQuoteBlock()),
    ])
    tags = ClusterTaggableManager(through=NewsPageTag, blank=True)
    search_fields = [*Page.search_fields, index.SearchField("body")]
    content_panels = [*Page.content_panels, FieldPanel("date"), FieldPanel("body"),
                      FieldPanel("tags")]
    parent_page_types = ["news.NewsIndexPage"]
""",
    "events": """from django.db import models
from wagtail import blocks
from wagtail.admin.panels import FieldPanel, MultiFieldPanel
from wagtail.contrib.table_block.blocks import TableBlock
from wagtail.fields import RichTextField, StreamField
from wagtail.models import Orderable, Page


class EventPage(Page):
    starts = models.DateTimeField()
    ends = models.DateTimeField(null=True, blank=True)
    venue = models.CharField(max_length=255, blank=True)
    description = RichTextField(blank=True)
    programme = StreamField([
        ("session", blocks.StructBlock([("time", blocks.TimeBlock()),
                                        ("title", blocks.CharBlock())])),
        ("table", TableBlock()),
    ], blank=True)
    content_panels = [*Page.content_panels,
                      MultiFieldPanel([FieldPanel("starts"), FieldPanel("ends")], "When"),
                      FieldPanel("venue"), FieldPanel("description"), FieldPanel("programme")]


class EventIndexPage(Page):
    subpage_types = ["events.EventPage"]
""",
    "people": """from django.db import models
from wagtail.admin.panels import FieldPanel
from wagtail.contrib.settings.models import BaseSiteSetting, register_setting
from wagtail.search import index
from wagtail.snippets.models import register_snippet


@register_snippet
class Person(index.Indexed, models.Model):
    name = models.CharField(max_length=255)
    role = models.CharField(max_length=255, blank=True)
    photo = models.ForeignKey("wagtailimages.Image", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    panels = [FieldPanel("name"), FieldPanel("role"), FieldPanel("photo")]
    search_fields = [index.SearchField("name"), index.AutocompleteField("name")]

    def __str__(self):
        return self.name


@register_setting
class ContactSettings(BaseSiteSetting):
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
""",
}

HAND_HOOKS = """from wagtail import hooks


@hooks.register("construct_main_menu")
def keep_{app}_menu(request, menu_items):
    return menu_items
"""


def grow(site: Path, settings_path: Path, urls_path: Path) -> list[str]:
    """Add the apps above to the site; return the apps that need makemigrations."""
    for app in HAND_APPS:
        _hand_app(site / app, app)
    for app in SECTIONS:
        _section_app(site / app, app)
    (settings_path.parent.parent / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    with open(settings_path, "a", encoding="utf-8") as settings:
        settings.write(SETTINGS_TAIL.format(hand_apps=HAND_APPS, sections=SECTIONS))
    with open(urls_path, "a", encoding="utf-8") as urls:
        urls.write(URLS_TAIL.format(apps=SECTIONS))
    return list(HAND_APPS)


def _hand_app(path: Path, app: str) -> None:
    _write(path / "__init__.py", "")
    _write(path / "apps.py", APPS_PY.format(app=app, camel=_camel(app)))
    _write(path / "models.py", HAND_MODELS[app])
    _write(path / "wagtail_hooks.py", HAND_HOOKS.format(app=app))
    _write(path / "migrations" / "__init__.py", "")
    _write(path / "urls.py", "urlpatterns = []\n")
    _write(path / "templates" / app / "page.html", "{% extends 'base.html' %}\n")
    _write(path / "locale" / "fr" / "LC_MESSAGES" / "django.po", LOCALE_PO)


def _section_app(path: Path, app: str) -> None:
    title = app.replace("_", " ").capitalize()
    _write(path / "__init__.py", PACKAGE_INIT.format(title=title))
    _write(path / "apps.py", APPS_PY.format(app=app, camel=_camel(app)))
    _write(path / "templatetags" / "__init__.py", "")
    _write(path / "templatetags" / f"{app}_tags.py", TAGS.format(app=app))
    _write(path / "templates" / app / "index.html", TEMPLATE.format(app=app))
    _write(path / "locale" / "fr" / "LC_MESSAGES" / "django.po", LOCALE_PO)
    _write(path / "features" / "__init__.py", PACKAGE_INIT.format(title=f"{title} features"))
    model_imports, imports, routes = [], [], []
    for feature in FEATURES:
        for part in (None, *PARTS):
            dotted = feature if part is None else f"{feature}.{part}"
            folder = path / "features" / dotted.replace(".", "/")
            name = dotted.replace(".", "_")
            part_title = f"{title} {dotted.replace('.', ' ')}"
            camel = _camel(f"{app}_{name}")
            _write(folder / "__init__.py", PACKAGE_INIT.format(title=part_title))
            _write(folder / "models.py", PART_MODELS.format(title=part_title, camel=camel))
            _write(folder / "views.py", PART_VIEWS.format(title=part_title, camel=camel, app=app))
            model_imports.append(f"from .features.{dotted} import models as {name}_models")
            imports.append(f"from .features.{dotted} import views as {name}_views")
            routes.append(f'    path("{dotted.replace(".", "/")}/", {name}_views.index),')
    _write(
        path / "models.py",
        f'"""{title}: the fields its features share (no tables of its own)."""\n\n'
        + "\n".join(f"{line}  # noqa: F401" for line in model_imports)
        + "\n",
    )
    _write(
        path / "urls.py",
        "from django.urls import path\n\n"
        + "\n".join(imports)
        + "\n\nurlpatterns = [\n"
        + "\n".join(routes)
        + "\n]\n",
    )


def _camel(name: str) -> str:
    return "".join(word.capitalize() for word in name.split("_"))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
