"""One route served ahead of FastAPI's router: the request path every busy service takes most.

FastAPI's router, its exception and exit-stack middleware and its request handling cost more CPU
per request than a small model's forward pass (bench/RESULTS.md, "Transform under load"). `HotRoute`
sits inside the telemetry and body-limit middleware, so requests keep their id, metrics, log line
and size limit, and hands one method and path straight to the route's endpoint with the app's
exception handlers, the same answers as through the router. The route stays declared on its router:
that is what OpenAPI documents, and the endpoint is the same function."""
from __future__ import annotations

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import request_response


class HotRoute:
    def __init__(self, app, route, exception_handlers: dict):
        self.app = app
        self.route = route  # the declared APIRoute: telemetry labels requests by its path template
        self.method = next(iter(route.methods))
        # As Starlette builds its stack: the catch-all (500 / Exception) belongs to the outermost
        # ServerErrorMiddleware, which also re-raises for the logs; the rest are the router's.
        handlers = {k: v for k, v in exception_handlers.items() if k not in (500, Exception)}
        self.hot = ExceptionMiddleware(request_response(route.endpoint), handlers=handlers)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == self.route.path and scope["method"] == self.method:
            scope["route"] = self.route
            return await self.hot(scope, receive, send)
        return await self.app(scope, receive, send)
