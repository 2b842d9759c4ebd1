"""`inspector serve`: loopback by default, the configured port, read-only warning without a token;
a login for every page beyond loopback; proxy headers only from trusted proxies."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from inspector.cli import main
from tests.pipeline.conftest import until


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    """uvicorn.run replaced by a recorder; data (and the SQLite file) in a temp folder."""
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path))
    calls: list[dict] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    return calls


def test_serve_binds_loopback_by_default(runs: list[dict], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 0, result.output
    assert (runs[0]["host"], runs[0]["port"]) == ("127.0.0.1", 8000)
    assert "read-only" in result.output
    assert runs[0]["app"].state.settings.data_dir == str(tmp_path)
    assert (tmp_path / "inspector.db").is_file()  # the embedded schema is brought up to date first


def test_serve_options_and_token(runs: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_SERVER__TOKEN", "s3cret")
    monkeypatch.setenv("INSPECTOR_SERVER__PORT", "9000")
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert (runs[0]["host"], runs[0]["port"]) == ("0.0.0.0", 9000)
    assert "read-only" not in result.output


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(runs: list[dict]) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "needs server.token" in result.output and not runs


def _wrong_logins(app: object, options: dict, forwarded_for: list[str]) -> list[int]:
    """Run the app in a real uvicorn with the options `inspector serve` gave it, and try a wrong
    token once from each X-Forwarded-For address (all from 127.0.0.1): the status codes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        until(lambda: server.started, 30)
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
            form = {"csrf": csrf, "token": "guess", "name": "Eve"}
            return [
                client.post("/login", data=form, headers={"X-Forwarded-For": address}).status_code
                for address in forwarded_for
            ]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_the_login_throttle_counts_the_real_peer_unless_a_proxy_is_trusted(
    runs: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn believes X-Forwarded-For from loopback clients by default: a client naming a new
    address each try had unlimited guesses. Only server.trusted_proxies are believed."""
    monkeypatch.setenv("INSPECTOR_SERVER__TOKEN", "s3cret")
    addresses = [f"10.0.0.{i}" for i in range(1, 8)]
    assert CliRunner().invoke(main, ["serve"]).exit_code == 0
    app, options = runs[0].pop("app"), {k: v for k, v in runs[0].items() if k not in ("host", "port")}
    assert _wrong_logins(app, options, addresses) == [401] * 5 + [429] * 2

    monkeypatch.setenv("INSPECTOR_SERVER__TRUSTED_PROXIES", "127.0.0.1")  # behind a local proxy
    assert CliRunner().invoke(main, ["serve"]).exit_code == 0
    app, options = runs[1].pop("app"), {k: v for k, v in runs[1].items() if k not in ("host", "port")}
    assert _wrong_logins(app, options, addresses) == [401] * 7  # each client has its own count
