"""Which webhook URLs the service may call. A URL that names or resolves to a loopback, private,
link-local or otherwise internal address is refused unless `CUBE_WEBHOOK_ALLOW_PRIVATE` is set:
otherwise any API key could make the workers probe the network they run in. It is checked when the
endpoint is registered and again before every delivery (a name may resolve elsewhere later)."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


class AddressRefused(ValueError):
    """The URL may not be called; the message says why."""


def check_url_shape(url: str) -> str:
    """http(s), a host, no credentials, not too long: else AddressRefused."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"url must be an http:// or https:// URL with a host, got {url[:100]!r}")
    if parts.username or parts.password:
        raise AddressRefused("url must not carry credentials; the signature authenticates the service")
    try:
        parts.port
    except ValueError:
        raise AddressRefused(f"url has an invalid port: {url[:100]!r}") from None
    return url


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_reachable(url: str, allow_private: bool) -> None:
    """Resolve the URL's host; AddressRefused if it cannot be resolved or (unless allowed) any of its
    addresses is internal."""
    parts = urlsplit(check_url_shape(url))
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"the host {parts.hostname!r} does not resolve ({exc})") from None
    if allow_private:
        return
    internal = sorted({info[4][0] for info in infos if _internal(info[4][0])})
    if internal:
        raise AddressRefused(f"{parts.hostname!r} resolves to an internal address ({internal[0]}); webhooks go to "
                             f"public addresses unless the service sets CUBE_WEBHOOK_ALLOW_PRIVATE=true")
