"""Logging reviewers in and out (the rules: web/security.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspector.web import security
from inspector.web.pages import render, see_other, settings_of

router = APIRouter()


def _local(url: str) -> str:
    """Only same-site paths as redirect targets (no open redirect via ``next``)."""
    return url if url.startswith("/") and not url.startswith(("//", "/\\")) else "/queue"


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> HTMLResponse:
    security.csrf_token(request)  # the session (and its cookie) starts here, for the form
    return render(request, "login.html", {"next": _local(next)})


@router.post("/login", dependencies=[Depends(security.check_csrf)])
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/queue",
) -> RedirectResponse:
    security.login(request, settings_of(request).server, token, name, request.app.state.throttle)
    return see_other(_local(next))


@router.post("/logout", dependencies=[Depends(security.check_csrf)])
def logout(request: Request) -> RedirectResponse:
    security.logout(request)
    return see_other("/queue")
