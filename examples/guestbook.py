"""A small Flask app (WSGI), mounted at /guestbook beside the ASGI apps.

It shows what a team brings along from Gunicorn: `url_for` builds links under
the mount prefix (uvhost passes it as SCRIPT_NAME), a form posts back, and a
JSON route serves the same data. uvhost runs it in a pool of threads per
worker (`threads` in the config) while the event loop does the socket I/O.
The entries live in the worker's memory: this is an example, not a database.
"""

from __future__ import annotations

import threading

from flask import Flask, jsonify, redirect, render_template_string, request, url_for

app = Flask(__name__)

_entries: list[str] = []
_lock = threading.Lock()  # requests run in several threads at once
MAX_ENTRIES = 50  # bounded: an example must not grow without end
MAX_LENGTH = 200

PAGE = """<!doctype html>
<title>Guestbook</title>
<h1>Guestbook (Flask, WSGI)</h1>
<form method="post" action="{{ url_for('sign') }}">
  <input name="text" maxlength="200" placeholder="Say hello" required>
  <button>Sign</button>
</form>
<ul>{% for entry in entries %}<li>{{ entry }}</li>{% endfor %}</ul>
<p><a href="{{ url_for('entries_json') }}">as JSON</a></p>
"""


@app.get("/")
def index() -> str:
    with _lock:
        entries = list(_entries)
    return render_template_string(PAGE, entries=entries)


@app.post("/sign")
def sign():  # type: ignore[no-untyped-def]
    text = request.form.get("text", "").strip()[:MAX_LENGTH]
    if text:
        with _lock:
            _entries.insert(0, text)
            del _entries[MAX_ENTRIES:]
    return redirect(url_for("index"), code=303)


@app.get("/entries.json")
def entries_json():  # type: ignore[no-untyped-def]
    with _lock:
        return jsonify(entries=list(_entries))
