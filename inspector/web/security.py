"""Who may read and write: a token login, named by a signed session cookie and kept on the server
(web_sessions: logging out ends it, so a copied cookie is worth nothing after), and a per-session
CSRF token; for machines (the JSON API, /metrics), a token in the Authorization header.

Reads are open to anyone who can reach a server bound to loopback (the default); bound to
any other address, every page needs a login. Every write (reviews, thresholds, login itself)
must carry the session's CSRF token, and reviews and thresholds also need a logged-in
reviewer, whose name goes into the audit records. A session, and so a cookie, starts only at
the login form: a visitor who only reads gets none.

Machines send ``Authorization: Bearer <token>`` instead (no cookie, so no CSRF): writes need
the writer token (``server.token``, the one reviewers log in with); reads need a token beyond
loopback, as pages need a login, or wherever ``api.read_token`` is set (then that token or
the writer's). Wrong tokens count against the client as wrong logins do.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inspector.config import ServerSettings, Settings
from inspector.store import review
from inspector.store.db import session_scope

log = logging.getLogger(__name__)

_UNKNOWN = object()
SESSION_SECONDS = 12 * 3600  # a login's lifetime (its cookie's too)
SECRET_FILE = "session.key"  # in data_dir: the cookie-signing key when server.secret is empty
OPEN_PATHS = ("/login", "/healthz", "/readyz", "/favicon.ico", "/static/")  # no login on any address
TOKEN_PATHS = ("/api/", "/metrics")  # machines': a token in the Authorization header instead of a login

NO_TOKEN = (
    "Writes are disabled: no login token is configured. "
    "Set server.token in the config (or INSPECTOR_SERVER__TOKEN) and restart the server."
)


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: server.secret, else a random key made once per install and kept
    (mode 0600) in data_dir, so restarts and several dashboard processes share it. Never derived
    from the token: a cookie must not let anyone test guesses of the token offline."""
    if settings.server.secret:
        return settings.server.secret
    path = settings.data_path / SECRET_FILE
    try:
        return _kept_secret(path)
    except OSError as exc:
        log.warning("cannot keep a session key in %s (%s): sessions end when the server stops", path, exc)
        return secrets.token_hex(32)


def _kept_secret(path: Path) -> str:
    """The key in ``path``, written first if there is none (atomically: a second process racing
    to write it reads the first one's key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)  # fails if another process was first: its key is the one
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as file:
        secret = file.read().strip()
    if len(secret) < 32:
        raise OSError(f"{path} holds no key (delete it to have a new one made)")
    return secret


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def uvicorn_proxy_options(server: ServerSettings) -> dict[str, Any]:
    """uvicorn's proxy settings: X-Forwarded-For is believed only from server.trusted_proxies
    (uvicorn would otherwise take it from any loopback client, and a client that names its own
    address gets unlimited login tries)."""
    if not server.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(server.trusted_proxies)}


def refuse_nul(items: Iterable[tuple[str, Any]], where: str) -> None:
    """A NUL character never reaches the database (PostgreSQL refuses it in text, a 500): a 400."""
    if any("\x00" in key or (isinstance(value, str) and "\x00" in value) for key, value in items):
        raise HTTPException(400, f"The {where} holds a NUL character.")


def clean_request(request: Request) -> None:
    """Every request's path and query are free of NUL characters."""
    refuse_nul([("path", request.url.path), *request.query_params.multi_items()], "address")


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use (which starts a session, and its cookie)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def page_csrf(request: Request) -> str:
    """The CSRF token a page's forms carry: the session's, if it has one (at the login form, or
    logged in); "" for a visitor who only reads, who then gets no cookie at all."""
    return request.session.get("csrf", "")


def require_reader(request: Request) -> None:
    """Every page needs a login when the dashboard listens beyond loopback (server.host); the
    machines' paths check their token instead (``require_token_reader``)."""
    settings: Settings = request.app.state.settings
    if is_loopback(settings.server.host) or request.url.path.startswith(OPEN_PATHS + TOKEN_PATHS):
        return
    if not settings.server.token:
        raise HTTPException(403, f"This dashboard listens on {settings.server.host}: {NO_TOKEN}")
    if not current_user(request):
        raise HTTPException(401, "Log in to see this dashboard: it listens beyond this machine.")


def current_user(request: Request) -> str | None:
    """The logged-in reviewer: the cookie's login must still be open on the server (a logged-out
    cookie, replayed, is refused and cleared). Looked up once per request."""
    known = getattr(request.state, "user", _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    user, session_id = request.session.get("user"), request.session.get("login")
    if user and session_id:
        with session_scope(request.app.state.settings.db_url) as session:
            user = review.login_user(session, session_id)
    else:
        user = None
    if user is None and "user" in request.session:
        request.session.clear()
    request.state.user = user
    return user


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose form (or X-CSRF-Token header) lacks this session's token."""
    form = await request.form()
    refuse_nul(form.multi_items(), "form")
    sent = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
    expected = request.session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            403, "The form's security token is missing or stale: reload the page and try again."
        )


async def require_writer(request: Request) -> str:
    """The logged-in reviewer's name, for a write that passed the CSRF check; else refuse."""
    if not request.app.state.settings.server.token:
        raise HTTPException(403, NO_TOKEN)
    user = current_user(request)
    if not user:
        raise HTTPException(401, "Log in to review frames or change thresholds.")
    await check_csrf(request)
    return user


bearer = HTTPBearer(
    auto_error=False,
    description="server.token for writes; for reads beyond loopback, api.read_token or server.token",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _check_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None, tokens: list[str]
) -> None:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "Send a token: Authorization: Bearer <token>.", headers=challenge)
    who = request.client.host if request.client else "unknown"
    throttle: LoginThrottle = request.app.state.throttle  # the login form's: one count of wrong tokens
    throttle.check(who)
    sent = credentials.credentials.encode()
    if not any(token and hmac.compare_digest(sent, token.encode()) for token in tokens):
        throttle.failed(who)
        raise HTTPException(401, "Wrong token.", headers=challenge)


def require_token_reader(request: Request, credentials: Credentials) -> None:
    """A machine's read: open on loopback unless api.read_token is set; else that token or the
    writer's."""
    settings: Settings = request.app.state.settings
    if is_loopback(settings.server.host) and not settings.api.read_token:
        return
    tokens = [settings.api.read_token, settings.server.token]
    if not any(tokens):
        raise HTTPException(403, f"This dashboard listens on {settings.server.host}: {NO_TOKEN}")
    _check_token(request, credentials, tokens)


def require_token_writer(request: Request, credentials: Credentials) -> None:
    """A machine's write: the writer token (server.token); refused when none is configured."""
    settings: Settings = request.app.state.settings
    if not settings.server.token:
        raise HTTPException(403, NO_TOKEN)
    _check_token(request, credentials, [settings.server.token])


class LoginThrottle:
    """Wrong tokens per client address: after ``limit`` within ``window`` seconds, further tries
    are refused (429) until the oldest failure ages out, so a token cannot be guessed quickly.

    Kept in memory: the dashboard is one process. Behind a reverse proxy every client has the
    proxy's address, so a burst of wrong tokens holds everyone off for up to ``window``.
    """

    def __init__(self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, who: str) -> deque[float]:
        now = self.clock()
        if len(self.failures) > 1024:  # many addresses: forget the ones whose failures aged out
            for key in [k for k, times in self.failures.items() if now - times[-1] >= self.window]:
                del self.failures[key]
        times = self.failures.setdefault(who, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def check(self, who: str) -> None:
        times = self._recent(who)
        if len(times) >= self.limit:
            wait = math.ceil(times[0] + self.window - self.clock())
            raise HTTPException(
                429, f"Too many wrong tokens: try again in {wait} s.", headers={"Retry-After": str(wait)}
            )

    def failed(self, who: str) -> None:
        self._recent(who).append(self.clock())


def login(request: Request, server: ServerSettings, token: str, name: str, throttle: LoginThrottle) -> None:
    """Start a reviewer session if the token matches; a fresh CSRF token follows."""
    if not server.token:
        raise HTTPException(403, NO_TOKEN)
    who = request.client.host if request.client else "unknown"
    throttle.check(who)
    if not hmac.compare_digest(token.encode(), server.token.encode()):
        throttle.failed(who)
        raise HTTPException(401, "Wrong token.")
    name = name.strip()
    if not name or len(name) > 64:
        raise HTTPException(400, "Give your name (up to 64 characters): it is recorded with your reviews.")
    with session_scope(request.app.state.settings.db_url) as session:
        session_id = review.start_login(session, name, timedelta(seconds=SESSION_SECONDS))
    request.session.clear()
    request.session.update(user=name, login=session_id)
    request.state.user = name
    csrf_token(request)


def logout(request: Request) -> None:
    """End the login on the server, not only in this browser: its cookie is worth nothing after."""
    session_id = request.session.get("login")
    if session_id:
        with session_scope(request.app.state.settings.db_url) as session:
            review.end_login(session, session_id)
    request.session.clear()
    request.state.user = None
