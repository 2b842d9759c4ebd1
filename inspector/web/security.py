"""Who may write: a token login kept in a signed session cookie, and a per-session CSRF token.

Reads are open to anyone who can reach the (by default loopback-only) server; every write
(reviews, thresholds, login itself) must carry the session's CSRF token, and reviews and
thresholds also need a logged-in reviewer, whose name goes into the audit records.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Callable

from fastapi import HTTPException, Request

from inspector.config import ServerSettings

NO_TOKEN = (
    "Writes are disabled: no login token is configured. "
    "Set server.token in the config (or INSPECTOR_SERVER__TOKEN) and restart the server."
)


def session_secret(server: ServerSettings) -> str:
    """The cookie-signing key: configured, else derived from the token, else random per process."""
    if server.secret:
        return server.secret
    if server.token:
        return hashlib.sha256(f"inspector-session:{server.token}".encode()).hexdigest()
    return secrets.token_hex(32)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def current_user(request: Request) -> str | None:
    return request.session.get("user")


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose form (or X-CSRF-Token header) lacks this session's token."""
    form = await request.form()
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
    request.session.clear()
    request.session["user"] = name
    csrf_token(request)
