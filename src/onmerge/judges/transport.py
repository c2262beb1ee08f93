"""One HTTP exchange for the judges: credentials stay on their origin and out of messages, and the whole response
arrives by a deadline.

urllib copies a request's ordinary headers to wherever a redirect points, so a bearer key set with `headers=` would
reach any host the endpoint redirects to; headers set with `add_unredirected_header` are dropped on every redirect.
Here they are carried on only while the redirect stays on the same origin (scheme, host, port). urllib's timeout is
per socket read, so a server that trickles a byte at a time never trips it; a watchdog shuts the exchange's sockets
down when its deadline passes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

DEFAULT_PORTS = {"http": 80, "https": 443}
AUTHORIZATION = "Authorization"


class DeadlineExceeded(TimeoutError):
    """The whole response did not arrive within the exchange's deadline."""


@dataclass(frozen=True)
class Reply:
    """A complete HTTP response, whatever its status."""

    status: int
    headers: Message
    body: bytes


def public_url(url: str) -> str:
    """`url` with the credentials in it (`user:password@`) masked, for messages and records; other text as is."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def basic_auth_request(url: str) -> urllib.request.Request:
    """A GET of `url` with its credentials, if any, moved out of the URL into Basic auth (kept on its origin)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])))
    pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
    request.add_unredirected_header(AUTHORIZATION, "Basic " + base64.b64encode(pair.encode()).decode())
    return request


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, the default port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a port: urllib will fail on it; it matches no origin
        return scheme, "", None
    return scheme, parts.hostname or "", port or DEFAULT_PORTS.get(scheme)


def exchange(request: urllib.request.Request, *, timeout_s: float, deadline_s: float) -> Reply:
    """`request` sent, following redirects, and its whole response read within `deadline_s` (each read within
    `timeout_s`). HTTP errors come back as a Reply; connection failures raise OSError or HTTPException,
    DeadlineExceeded when the deadline cut the exchange short."""
    watchdog = _Watchdog(deadline_s)
    opener = urllib.request.build_opener(
        _SameOriginRedirects, _WatchedHTTPHandler(watchdog), _WatchedHTTPSHandler(watchdog)
    )
    with watchdog:
        try:
            reply = _read(opener, request, timeout_s)
        except (OSError, http.client.HTTPException) as error:
            if watchdog.expired:
                raise DeadlineExceeded(f"no complete response within {deadline_s:g} s") from error
            raise
    if watchdog.expired:  # a body without a length reads as complete when its socket is shut
        raise DeadlineExceeded(f"no complete response within {deadline_s:g} s")
    return reply


def _read(opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout_s: float) -> Reply:
    """The whole response to `request`, an HTTP error's included (urllib raises those, body unread)."""
    try:
        response = opener.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        return Reply(response.status, response.headers, response.read())


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, with the Authorization header carried on only within its origin."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        credentials = req.unredirected_hdrs.get(AUTHORIZATION)
        if redirected is not None and credentials and origin(newurl) == origin(req.full_url):
            redirected.add_unredirected_header(AUTHORIZATION, credentials)
        return redirected


class _Watchdog:
    """Shuts down the sockets of one exchange (its redirects included) once its deadline has passed."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """Keep the socket itself: urllib drops the connection's reference to it once the headers are read."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Unblock a read in progress (shutdown, not close: another thread is reading); a closed socket stays closed."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A connection that reports its socket to a watchdog once connected."""

    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    def connect(self) -> None:
        super().connect()
        self._watchdog.watch(self.sock)


class _WatchedHTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPConnection, req, watchdog=self._watchdog)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPSConnection, req, context=self._context, watchdog=self._watchdog)
