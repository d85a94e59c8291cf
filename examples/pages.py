"""A Starlette site: a couple of routes and a lifespan context.

Mounted at "/" next to examples/api.py at "/api" and examples/chat.py at
"/chat", its index page links to both; its style sheet comes from
examples/assets, a folder the host serves itself at "/assets". The lifespan runs once per worker,
when the host starts it, and its clean-up when the host drains it.
"""

import contextlib
import time

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

INDEX = """<!doctype html>
<title>uvhost examples</title>
<link rel="stylesheet" href="/assets/style.css">
<h1>uvhost examples</h1>
<ul>
  <li><a href="/api/docs">API docs</a> (FastAPI, mounted at /api)</li>
  <li><a href="/chat/">Chat</a> (WebSocket, mounted at /chat)</li>
  <li><a href="/assets/style.css">A static file</a> (served by the host from examples/assets)</li>
  <li><a href="/about">About</a></li>
</ul>
"""


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = time.monotonic()
    yield
    # Close database pools, flush buffers, etc. here.


async def index(request):
    return HTMLResponse(INDEX)


async def about(request):
    uptime = time.monotonic() - request.app.state.started
    return PlainTextResponse(f"Served by uvhost; this worker has been up {uptime:.0f}s.\n")


app = Starlette(routes=[Route("/", index), Route("/about", about)], lifespan=lifespan)
