"""The container's routes, shared by both HTTP front ends (``http1`` and ``asgi``).

``GET /ping`` (200, empty: the process only listens once the model is loaded), ``POST /invocations``,
``GET /execution-parameters`` (when the handler has one); anything else is 404 ``{}``, as nginx
answers in front of the SageMaker containers. Bodies over ``MAX_CONTENT_LENGTH`` are 413.
"""

from __future__ import annotations

from enum import Enum

from modelgate.containers.protocol import Reply


class Route(Enum):
    INVOCATIONS = "invocations"
    PING = "ping"
    EXECUTION_PARAMETERS = "execution-parameters"
    NOT_FOUND = "not-found"


def route(method: str, path: str) -> Route:
    if path == "/invocations" and method == "POST":
        return Route.INVOCATIONS
    if path == "/ping" and method == "GET":
        return Route.PING
    if path == "/execution-parameters" and method == "GET":
        return Route.EXECUTION_PARAMETERS
    return Route.NOT_FOUND


PING = Reply(200, b"")
NOT_FOUND = Reply(404, b"{}", "application/json")


def too_large(size: int, limit: int) -> Reply:
    message = f"Request Entity Too Large: the payload is {size} bytes, more than the {limit} bytes allowed."
    return Reply(413, message.encode(), "text/plain; charset=utf-8")
