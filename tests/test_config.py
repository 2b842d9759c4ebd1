"""The shipped configurations load, and mistakes in a file or the environment are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import ConfigError, load_settings

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
