"""JSON answers as Discord's API gives them, for every route of the local server."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: discord.py only decodes a body whose Content-Type is exactly that.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def error_response(status: int, code: int, message: str) -> web.Response:
    """Discord's error body: one of its JSON error codes (50013 Missing Permissions, 50027 Invalid Webhook
    Token, ...) and the message that goes with it."""
    return json_response({"code": code, "message": message}, status)
