"""Server-side HTTP calls to user-given URLs, safe against SSRF.

The host is resolved once, every resolved address is checked (only public addresses unless
private ones are allowed), and the request goes to that pinned address — so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot redirect it. Redirects are
not followed. TLS still verifies the certificate against the original host name (SNI).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import InvalidInput, PermissionDenied


class AddressNotAllowed(PermissionDenied):
    """The URL resolves to an address server-side fetches may not reach."""


def check_address(address: str, *, is_private_allowed: bool) -> None:
    """Refuse loopback, private, link-local, multicast and reserved addresses unless allowed."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_global and not ip.is_multicast:
        return
    # link-local stays refused even when private ranges are allowed: cloud metadata lives there
    is_local = ip.is_private or ip.is_loopback
    if is_private_allowed and is_local and not (ip.is_unspecified or ip.is_link_local):
        return
    raise AddressNotAllowed(f"address {address} is not allowed for server-side requests")


async def resolve_pinned(url: str, *, is_private_allowed: bool) -> tuple[str, str, str]:
    """``(url with the host replaced by its checked address, host, host header)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook URL must be http(s)://host/..., got {url!r}", field="url")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise AddressNotAllowed(f"{host} does not resolve")
    for address in addresses:
        check_address(address, is_private_allowed=is_private_allowed)
    pinned = addresses[0]
    literal = f"[{pinned}]" if ":" in pinned else pinned
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc)), host, host_header


async def post_json(url: str, body: Any, *, is_private_allowed: bool,
                    timeout_s: float = 10.0) -> int:
    """POST ``body`` as JSON to ``url`` via its pinned, checked address; the status code."""
    pinned, host, host_header = await resolve_pinned(url, is_private_allowed=is_private_allowed)
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                 trust_env=False) as client:
        response = await client.post(pinned, json=body, headers={"Host": host_header},
                                     extensions={"sni_hostname": host})
    return response.status_code
