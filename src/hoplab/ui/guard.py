"""Who may talk to the UI. The server listens on 127.0.0.1 only; on top of that:
- every request must name one of its own loopback hosts in `Host` (a page elsewhere that
  rebinds a name of its own to 127.0.0.1 sends its own name: refused);
- a request that changes state (anything but GET and HEAD) must come from the page's own
  origin: `Sec-Fetch-Site` same-origin or none, and `Origin`, when sent, one of ours. A
  cross-origin POST gets 403 before any handler runs."""

from __future__ import annotations

import json

SAFE_METHODS = {"GET", "HEAD"}
SAME_SITE = {"same-origin", "none"}


def loopback_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def refusal(method: str, headers: dict[str, str], hosts: set[str]) -> tuple[int, str] | None:
    """(status, reason) when the request must be refused; None when it may go on."""
    host = headers.get("host", "")
    if host not in hosts:
        return 421, f"Host {host!r} is not this server (it answers to {', '.join(sorted(hosts))})"
    if method in SAFE_METHODS:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in SAME_SITE:
        return 403, f"cross-origin request refused (Sec-Fetch-Site: {fetch_site})"
    origin = headers.get("origin")
    if origin is not None and origin.removeprefix("http://") not in hosts:
        return 403, f"cross-origin request refused (Origin: {origin})"
    return None


class OriginGuard:
    """ASGI middleware applying `refusal` to every HTTP request."""

    def __init__(self, app, hosts: set[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            refused = refusal(scope["method"], headers, self.hosts)
            if refused is not None:
                status, reason = refused
                body = json.dumps({"error": reason}).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
