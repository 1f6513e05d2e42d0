"""What wiring does to the home before anything runs there."""

from __future__ import annotations

import stat
from pathlib import Path

from greenbutton.config import Settings
from greenbutton.wiring import prepare_home


def test_prepare_home_moves_an_old_payload_store_into_its_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir()
    (settings.home / "monitoring.db").write_text("records")
    (settings.home / "monitoring.db-wal").write_text("log")
    prepare_home(settings)
    moved = settings.home / "monitoring" / "payloads.db"
    assert moved.read_text() == "records" and moved.with_name("payloads.db-wal").exists()
    assert not (settings.home / "monitoring.db").exists()
    assert settings.monitoring.payload_store_uri == f"sqlite:///{moved}"


def test_prepare_home_makes_what_is_there_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir(mode=0o755)
    (settings.home / "mlflow.db").write_text("")
    (settings.home / "mlflow.db").chmod(0o644)
    prepare_home(settings)
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((settings.home / "mlflow.db").stat().st_mode) == 0o600
