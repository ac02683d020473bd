"""Python client for the cube service: `Client` (blocking) and `AsyncClient` (asyncio).

Needs only httpx and numpy (no torch). See docs/client.md."""
from cube_client.client import AsyncClient, Client
from cube_client.errors import (Conflict, ConnectionFailed, CubeError, NotFound, PayloadTooLarge, PermissionDenied,
                                RateLimited, ServerError, ServiceUnavailable, Unauthorized, ValidationError, WaitTimeout)

__all__ = ["AsyncClient", "Client", "Conflict", "ConnectionFailed", "CubeError", "NotFound", "PayloadTooLarge",
           "PermissionDenied", "RateLimited", "ServerError", "ServiceUnavailable", "Unauthorized", "ValidationError",
           "WaitTimeout"]
