"""`inspector serve`: loopback by default, the configured port, read-only warning without a token."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import main


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
