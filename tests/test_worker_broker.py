"""sgc_config.broker: the one broker configuration SCP and workers share."""

from __future__ import annotations

from pathlib import Path

from sgc_config.broker import broker_options
from sgc_config.settings import Settings


def test_embedded_default_is_the_filesystem_transport_under_the_data_dir(tmp_path: Path) -> None:
    url, opts = broker_options(Settings(data_dir=tmp_path))
    assert url == "sgcfs://"  # the project's atomic filesystem transport (sgc_config.fs_transport)
    assert opts["data_folder_in"] == opts["data_folder_out"]
    assert Path(opts["data_folder_in"]).is_dir() and Path(opts["processed_folder"]).is_dir()
    assert Path(opts["data_folder_in"]).is_relative_to(tmp_path.resolve())
    assert opts["store_processed"] is False and opts["polling_interval"] == 0.1


def test_redis_visibility_timeout_is_the_resend_deadline_and_prefix_moves_out(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url="redis://127.0.0.1:6379/3?global_keyprefix=site-a:&socket_timeout=5",
        resend_after=120,
    )
    url, opts = broker_options(settings)
    assert url == "redis://127.0.0.1:6379/3?socket_timeout=5"
    assert opts["global_keyprefix"] == "site-a:"
    assert opts["visibility_timeout"] == 120.0
    assert 1 <= opts["unacked_restore_interval"] <= 10
