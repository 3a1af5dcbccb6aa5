"""Reading a file a user named (edge.core.files): regular files only, never past the limit of its kind, one line
saying why not, no descriptor left open, and never a wait on a FIFO."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from edge.core.files import LIMITS, open_regular, read_file, read_text, size_text


class Refused(Exception):
    pass


def refusal(path, what: str = "label file", **kw) -> str:
    """The one line read_text gives for `path`, from a thread that must be done within seconds (a FIFO opened
    for reading would wait for a writer for ever)."""
    out = {}

    def read():
        try:
            read_text(path, what, Refused, **kw)
        except Refused as exc:
            out["line"] = str(exc)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), f"reading {path} did not return"
    return out["line"]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_fifo_a_device_a_socket_and_a_directory_are_refused_at_once_by_kind(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    before = open_descriptors()
    try:
        lines = {name: refusal(tmp_path / name) for name in ("pipe", "folder", "sock")}
        lines["zero"] = refusal("/dev/zero")
    finally:
        server.close()
    assert lines["pipe"].endswith("pipe: is a named pipe (FIFO), not a label file: only regular files are read")
    assert lines["folder"].endswith("folder: is a directory, not a label file")
    assert lines["sock"].endswith("sock: is a socket, not a label file: only regular files are read")
    assert lines["zero"] == "/dev/zero: is a character device, not a label file: only regular files are read"
    assert open_descriptors() == before - 1  # the socket's, closed above; none of the refused files'


def test_a_file_is_read_up_to_the_limit_of_its_kind_and_refused_past_it(tmp_path):
    limit = LIMITS["password file"]
    path = tmp_path / "pw"
    path.write_bytes(b"p" * limit)
    assert read_file(path, "password file", Refused) == b"p" * limit
    path.write_bytes(b"p" * (limit + 1))
    assert refusal(path, "password file") == (f"{path}: password file too large "
                                                 f"({limit + 1} bytes; at most {size_text(limit)})")
    assert read_file(path, "password file", Refused, limit=None) == b"p" * (limit + 1)


def test_a_file_that_says_it_is_empty_is_still_read_no_further_than_the_limit():
    """Files such as /proc's report size 0 and hold more: the read itself stops past the limit."""
    assert os.stat("/proc/self/maps").st_size == 0
    assert refusal("/proc/self/maps", limit=16) == "/proc/self/maps: label file too large (more than 16 bytes)"


def test_missing_unreadable_nul_and_foreign_text_each_get_their_line(tmp_path):
    assert refusal(tmp_path / "none.csv") == f"{tmp_path / 'none.csv'}: label file not found"
    assert read_text(tmp_path / "none.csv", "label file", Refused, missing_ok=True) is None
    assert refusal("a\0b") == "'a\\x00b': a file name cannot hold a NUL character"
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"Dog\nCat\nCaf\xe9\n")
    assert refusal(latin) == f"{latin}: label file is not UTF-8 text (line 3)"
    if os.geteuid() != 0:  # root reads anything
        latin.chmod(0)
        assert refusal(latin) == f"{latin}: cannot read the label file (Permission denied)"


def test_open_regular_hands_back_a_blocking_descriptor(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"x" * 100)
    fd = open_regular(path, "model file", Refused)
    try:
        assert os.get_blocking(fd) and os.read(fd, 200) == b"x" * 100
    finally:
        os.close(fd)
    with pytest.raises(Refused, match="model file too large"):
        open_regular(path, "model file", Refused, limit=99)
