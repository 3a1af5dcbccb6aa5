"""Replacing a file whole (edge.core.files): the old content or the new one, with its mode from the start."""

import os
import stat

import pytest

from edge.core.files import commit_file, replace_file


def test_a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it(tmp_path):
    path = tmp_path / "secret"
    path.write_text("old")
    before = os.umask(0o077)
    try:
        replace_file(path, b"new", mode=0o600)
        assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600
        replace_file(path, "text", durable=True)  # the default mode whatever the umask
        assert path.read_text() == "text" and stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("old")
    with pytest.raises(TypeError):
        replace_file(path, 42)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_finished_file_is_committed_over_the_old_one(tmp_path):
    new, path = tmp_path / "calibration.toml.part", tmp_path / "calibration.toml"
    new.write_text("b")
    path.write_text("a")
    commit_file(new, path)
    assert path.read_text() == "b" and not new.exists()
