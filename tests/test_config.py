"""The shipped configurations load, and mistakes in a file or the environment are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspector.config import ConfigError, load_settings
from inspector.web.security import is_loopback

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["default.yaml", "distributed.yaml"])
def test_shipped_configs_load(name: str) -> None:
    settings = load_settings(CONFIGS / name, environ={})
    assert settings.watch.ready_on_close and settings.watch.settle_seconds == 0.5
    assert settings.executor == ("celery" if name == "distributed.yaml" else "inline")


def test_environment_overrides_nested_settings(tmp_path: Path) -> None:
    env = {"INSPECTOR_WATCH__READY_ON_CLOSE": "false", "INSPECTOR_WATCH__SCORERS": "2"}
    settings = load_settings(CONFIGS / "default.yaml", environ=env)
    assert not settings.watch.ready_on_close and settings.watch.scorers == 2
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(None, environ={"INSPECTOR_WATCH__SETLE_SECONDS": "1"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("watch:\n  setle_seconds: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'setle_seconds'"):
        load_settings(bad, environ={})


def test_the_distributed_config_needs_a_login_and_names_its_own_database() -> None:
    """It binds the dashboard to 0.0.0.0 (every page then needs a login, so serve wants a token)
    and must not point the pipeline at a scratch database called 'test'."""
    settings = load_settings(CONFIGS / "distributed.yaml", environ={})
    assert settings.database_url.rsplit("/", 1)[1] == "inspector"
    compose = yaml.safe_load((CONFIGS.parent / "docker-compose.yml").read_text())
    assert compose["x-inspector"]["environment"]["INSPECTOR_DATABASE_URL"].endswith("/inspector")
    # No token: the dashboard refuses to bind beyond loopback (tests/web/test_serve.py), while
    # `docker compose down` still works, as an interpolation error would not let it.
    dashboard = compose["services"]["dashboard"]["environment"]
    assert dashboard["INSPECTOR_SERVER__TOKEN"] == "${INSPECTOR_TOKEN:-}"
    assert not is_loopback(settings.server.host)
    assert is_loopback(load_settings(CONFIGS / "default.yaml", environ={}).server.host)


def test_list_settings_from_the_environment() -> None:
    env = {"INSPECTOR_WATCH__IGNORE": "*.txt, *.log", "INSPECTOR_SERVER__TRUSTED_PROXIES": '["10.0.0.1"]'}
    settings = load_settings(CONFIGS / "default.yaml", environ=env)
    assert settings.watch.ignore == ("*.txt", "*.log")
    assert settings.server.trusted_proxies == ("10.0.0.1",)
    assert load_settings(CONFIGS / "default.yaml", environ={}).watch.ignore[:2] == ("*.txt", "*.json")
