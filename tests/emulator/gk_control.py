"""What every module's /_gatekeeper/ control paths share: reading a request's JSON body."""

from __future__ import annotations

import json


def body(environ) -> dict:
    """A control request's JSON body ({} when it has none); ValueError when it is not JSON."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    return json.loads(raw or b"{}")
