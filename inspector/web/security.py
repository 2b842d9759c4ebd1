"""Who may write: a token login kept in a signed session cookie, and a per-session CSRF token.

Reads are open to anyone who can reach the (by default loopback-only) server; every write
(reviews, thresholds, login itself) must carry the session's CSRF token, and reviews and
thresholds also need a logged-in reviewer, whose name goes into the audit records.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

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


def login(request: Request, server: ServerSettings, token: str, name: str) -> None:
    """Start a reviewer session if the token matches; a fresh CSRF token follows."""
    if not server.token:
        raise HTTPException(403, NO_TOKEN)
    if not hmac.compare_digest(token.encode(), server.token.encode()):
        raise HTTPException(401, "Wrong token.")
    name = name.strip()
    if not name or len(name) > 64:
        raise HTTPException(400, "Give your name (up to 64 characters): it is recorded with your reviews.")
    request.session.clear()
    request.session["user"] = name
    csrf_token(request)
