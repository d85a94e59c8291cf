"""A FastAPI app meant to be mounted under a path prefix, e.g. "/api".

The app knows nothing of its prefix: the host passes ``root_path="/api"`` in
the scope and keeps ``path`` whole, so routes match, ``request.url_for`` builds
links that include "/api", and the docs at /api/docs find their schema.
``create_app`` builds a fresh app, for ``factory = true``.
"""

from typing import Annotated, Any

from fastapi import Body, FastAPI, Request


def create_app() -> FastAPI:
    app = FastAPI(title="uvhost example API")

    @app.get("/")
    async def index(request: Request) -> dict[str, str]:
        return {
            "message": "uvhost example API",
            "item": str(request.url_for("read_item", item_id=1)),
        }

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        return {"item_id": item_id, "name": f"Item {item_id}"}

    @app.post("/echo")
    async def echo(payload: Annotated[Any, Body()]) -> Any:
        return payload

    return app


app = create_app()
