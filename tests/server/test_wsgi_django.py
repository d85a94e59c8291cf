"""A real Django project (settings, urls, views in one module) served as WSGI at a prefix:
reverse() under the mount, an upload through request.FILES, FileResponse, a 404."""

from __future__ import annotations

import hashlib

import pytest

DJANGO_APP = r"""
import hashlib
import os

from django.conf import settings

HERE = os.path.dirname(__file__)
if not settings.configured:  # once per test process; each test's host re-imports this module
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024,  # bigger uploads stream to a temporary file
        LOGGING_CONFIG=None,
    )

from django.core.wsgi import get_wsgi_application
from django.http import FileResponse, JsonResponse
from django.urls import clear_url_caches, path, reverse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return JsonResponse({"item": reverse("item", args=[3]), "script": request.META["SCRIPT_NAME"],
                         "path": request.path, "path_info": request.path_info})


def item(request, number):
    return JsonResponse({"number": number})


@csrf_exempt
def upload(request):
    received = request.FILES["file"]
    hasher = hashlib.sha256()
    for chunk in received.chunks():
        hasher.update(chunk)
    return JsonResponse({"name": received.name, "size": received.size,
                         "sha256": hasher.hexdigest(), "note": request.POST["note"]})


def report(request):
    return FileResponse(open(os.path.join(HERE, "report.bin"), "rb"))


urlpatterns = [
    path("", index),
    path("items/<int:number>", item, name="item"),
    path("upload", upload),
    path("report", report),
]

clear_url_caches()  # ROOT_URLCONF names this module: forget an earlier test's copy
application = get_wsgi_application()
"""

CONFIG = """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/" = "front", "/dj" = "django" }

[apps.front]
target = "apps:app"

[apps.django]
target = "djsite:application"
threads = 2
"""

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})
"""

REPORT = bytes(range(256)) * 2048


@pytest.fixture
def host(serve):
    running = serve(CONFIG, ASGI_APP, files={"djsite.py": DJANGO_APP})
    (running.directory / "report.bin").write_bytes(REPORT)
    return running


def test_django_reverse_includes_the_prefix(host):
    with host.client() as client:
        index = client.get("/dj/")
        item = client.get("/dj/items/9")
        missing = client.get("/dj/nothing")
        front = client.get("/")
    assert index.json() == {
        "item": "/dj/items/3",
        "script": "/dj",
        "path": "/dj/",
        "path_info": "/",
    }
    assert item.json() == {"number": 9}
    assert missing.status_code == 404
    assert front.text == "asgi"


def test_django_upload_and_file_response(host):
    data = bytes(range(253)) * 4000
    with host.client() as client:
        uploaded = client.post("/dj/upload", files={"file": ("big.bin", data)}, data={"note": "hé"})
        report = client.get("/dj/report")
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {
        "name": "big.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "hé",
    }
    assert report.status_code == 200
    assert report.content == REPORT
    assert report.headers["content-length"] == str(len(REPORT))
