"""The console's guards: bind rules, bearer tokens, cross-site POSTs, Host checks, body limits.

Pure ASGI and the standard library only, so ``ledgerflow ui`` can refuse a
bad ``--host`` before it finds out whether the ``[ui]`` extra is installed.

What :class:`Guard` enforces on every request, in this order:

1. ``Host`` must name the address the server is bound to (400 otherwise): a
   DNS-rebinding page that resolves its own name to 127.0.0.1 reaches the
   socket but not the data.
2. With a token, every ``/api`` request needs ``Authorization: Bearer T``
   (401 with ``WWW-Authenticate: Bearer`` otherwise; compared in constant
   time). The HTML shells and ``/assets`` hold no data and need none.
3. A request that may change something (any method but GET, HEAD, OPTIONS)
   is refused (403) when its ``Origin`` is not the server's own or when
   ``Sec-Fetch-Site`` says ``cross-site``/``same-site``; it must say
   ``Content-Type: application/json`` (415), which a plain HTML form cannot
   send; and its body may hold at most ``max_body`` bytes (413).

Every response, the refusals included, carries :data:`SECURITY_HEADERS`;
``/api`` responses also ``Cache-Control: no-store``.

Example::

    app = Guard(app, token="s3cret", allowed_hosts=allowed_hosts("127.0.0.1", 8765))
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from ledgerflow.errors import LedgerflowError

__all__ = [
    "CSP",
    "MAX_BODY_BYTES",
    "SECURITY_HEADERS",
    "Guard",
    "UnsafeBindError",
    "allowed_hosts",
    "check_bind",
    "is_loopback",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body the console reads (a resolution's output is small).
MAX_BODY_BYTES = 1 << 20

#: Only the console's own scripts, styles and API: an injected string cannot
#: load or send anything anywhere else, nor frame the page.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class UnsafeBindError(LedgerflowError):
    """Binding an address other machines can reach, without a token."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"Refusing to serve the console on {host} without a token: anyone who can reach "
            "that address could read every run and resolve escalations; pass --token (or set "
            "LEDGERFLOW_UI_TOKEN), or bind 127.0.0.1.")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, ``localhost``).

    Example::

        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse (:class:`UnsafeBindError`) a non-loopback ``host`` when there is no token.

    Example::

        check_bind("127.0.0.1", None)        # fine
        check_bind("0.0.0.0", "s3cret")      # fine: every API call needs the token
    """
    if not token and not is_loopback(host):
        raise UnsafeBindError(host)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The ``Host`` header values a server bound to ``host:port`` answers; None: any.

    A loopback server answers its loopback names only. A wildcard bind
    (``0.0.0.0``, ``::``) is reached under names it cannot know, so it takes
    any ``Host`` (it needs a token, :func:`check_bind`). Port 80 may be left
    out of the header.

    Example::

        >>> sorted(allowed_hosts("127.0.0.1", 8765))[:2]
        ['127.0.0.1:8765', '[::1]:8765']
    """
    if _is_wildcard(host):
        return None
    names = {"127.0.0.1", "localhost", "[::1]"} if is_loopback(host) else set()
    names.add(f"[{host.strip('[]')}]" if ":" in host else host.lower())
    found = {f"{name}:{port}" for name in names}
    if port == 80:
        found |= names
    return frozenset(found)


def _headers(scope: Scope) -> dict[str, str]:
    # The last value wins for a repeated header; none of those checked here repeats legally.
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])}


async def _refuse(send: Send, status: int, msg: str,
                  extra: Collection[tuple[str, str]] = ()) -> None:
    body = json.dumps({"errors": [{"loc": [], "msg": msg}]}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLargeError(Exception):
    pass


class Guard:
    """ASGI middleware holding the console's rules (see the module docstring).

    ``allowed_hosts`` None takes any ``Host`` (a wildcard bind with a token).

    Example::

        guarded = Guard(app, token=None, allowed_hosts=allowed_hosts("127.0.0.1", 8765))
    """

    def __init__(self, app: ASGIApp, *, token: str | None,
                 allowed_hosts: frozenset[str] | None,
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = allowed_hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        is_api = path == "/api" or path.startswith("/api/")
        send = self._with_headers(send, is_api=is_api)
        headers = _headers(scope)
        host = headers.get("host", "").lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            await _refuse(send, 400, f"The Host header {host!r} does not name this console's "
                          "address; open the URL it printed.")
            return
        if is_api and self.token is not None and not self._authorized(headers):
            await _refuse(send, 401, "This console needs its token: send "
                          "'Authorization: Bearer <token>'.",
                          [("www-authenticate", 'Bearer realm="ledgerflow"')])
            return
        if scope.get("method", "GET") in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        problem = self._cross_site(headers, host)
        if problem:
            await _refuse(send, 403, problem)
            return
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            await _refuse(send, 415, "Send the request body as JSON "
                          "(Content-Type: application/json).")
            return
        try:
            body = await self._read_body(headers, receive)
        except _BodyTooLargeError:
            await _refuse(send, 413, f"The request body is over {self.max_body} bytes.")
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # compare_digest on bytes: its time does not depend on where they differ.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), self.token)

    @staticmethod
    def _cross_site(headers: dict[str, str], host: str) -> str:
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            return f"Refused a {site} request: resolve from the console's own page."
        origin = headers.get("origin")
        # A browser sends Origin on every POST; a script (curl) sends none and is
        # held by the token instead. "null" is a sandboxed or file:// page.
        if origin is not None and origin.lower() not in (f"http://{host}", f"https://{host}"):
            return (f"Refused a request from the origin {origin!r}: only the console's own "
                    "page may change runs.")
        return ""

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise _BodyTooLargeError
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:  # a chunked body says no length up front
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _with_headers(send: Send, *, is_api: bool) -> Send:
        extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]
        if is_api:
            extra.append((b"cache-control", b"no-store"))
        names = {k for k, _ in extra}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + extra
            await send(message)

        return sending


def _replay(body: bytes, receive_more: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the server's messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive_more()  # whatever comes next: the client's disconnect

    return receive
