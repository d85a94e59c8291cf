"""The smallest complete ASGI 3 app, no framework: what uvhost calls, nothing more.

`GET /` answers "Hello, world!"; every other request gets a 404. The lifespan
protocol is answered too, so the host's startup and shutdown steps complete.
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        found = scope["method"] == "GET" and scope["path"] == "/"
        body = b"Hello, world!\n" if found else b"Not Found\n"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})
    else:  # a WebSocket: closing before accepting rejects the handshake
        await send({"type": "websocket.close"})
