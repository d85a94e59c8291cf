"""A WebSocket chat in Starlette: every message is broadcast to everyone connected.

`GET /` serves a page whose script opens a WebSocket to `ws` next to itself,
computed from `location`, so the page works wherever the host mounts the app
("/chat/" connects to "/chat/ws"). Connected sockets live in one worker's
memory: with several workers, clients only see others on the same process.
"""

import asyncio

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

PAGE = """<!doctype html>
<title>uvhost chat</title>
<h1>Chat</h1>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}${base}ws`);
  const log = (text) => {
    const item = document.createElement("li");
    item.textContent = text;
    document.getElementById("log").append(item);
  };
  socket.onopen = () => log("(connected)");
  socket.onclose = () => log("(disconnected)");
  socket.onmessage = (event) => log(event.data);
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    if (input.value) socket.send(input.value);
    input.value = "";
  };
</script>
"""

clients: set[WebSocket] = set()


async def page(request):
    return HTMLResponse(PAGE)


async def chat(websocket):
    await websocket.accept()
    clients.add(websocket)
    try:
        async for text in websocket.iter_text():
            # A client that just left may fail to receive; that is not our sender's error.
            await asyncio.gather(*(c.send_text(text) for c in clients), return_exceptions=True)
    finally:
        clients.discard(websocket)


app = Starlette(routes=[Route("/", page), WebSocketRoute("/ws", chat)])
