"""Progress lines (redrawn on a terminal, whole lines anywhere else) and the filter that keeps the runtime's
start-up banner off stderr while passing every other line through."""

import io
import os
import subprocess
import sys
from pathlib import Path

from edge.core.console import Progress, is_terminal

ROOT = Path(__file__).resolve().parents[2]
BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _plain(total: int, clock=lambda: 0.0) -> list[str]:
    stream = io.StringIO()
    with Progress(total, stream, clock=clock) as shown:
        for done in range(1, total + 1):
            shown.show(done, f"  reading: {done}/{total} files")
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    return text.splitlines()


def test_off_a_terminal_progress_is_whole_lines_at_each_tenth_and_always_the_last():
    lines = _plain(1000)
    assert lines[0] == "  reading: 1/1000 files" and lines[-1] == "  reading: 1000/1000 files"
    assert lines == [f"  reading: {n}/1000 files" for n in (1, *range(100, 1001, 100))]
    assert _plain(3) == [f"  reading: {n}/3 files" for n in (1, 2, 3)]  # fewer steps than tenths: each one


def test_off_a_terminal_a_slow_step_still_prints_a_line_every_few_seconds():
    ticks = iter(range(0, 10**6, 6))  # every call 6 s later than the last: longer than the interval
    lines = _plain(50, clock=lambda: float(next(ticks)))
    assert len(lines) == 50


def test_the_latest_state_is_printed_when_a_step_ends_early():
    stream = io.StringIO()
    with Progress(100, stream, clock=lambda: 0.0) as shown:
        for done in range(1, 16):
            shown.show(done, f"{done}/100")
    assert stream.getvalue().splitlines() == ["1/100", "10/100", "15/100"]


def _drain(master: int) -> str:
    """Everything written to the terminal: one read may return only a part, so read until the closed end says EIO."""
    chunks = []
    try:
        while chunk := os.read(master, 4096):
            chunks.append(chunk)
    except OSError:  # Linux: EIO once the other end is closed and the buffer is empty
        pass
    os.close(master)
    return b"".join(chunks).decode()


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ended_once():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert is_terminal(tty)
        with Progress(3, tty) as shown:
            for line in ("a 1/3 long", "a 2/3", "a 3/3"):
                shown.show(0, line)
    drawn = _drain(master)
    assert drawn.count("\r") >= 3 and drawn.rstrip("\r\n").endswith("a 3/3") and drawn.count("\n") == 1
    assert "a 2/3     " in drawn  # a shorter line covers the longer one before it


def _filtered(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` run inside native_stderr_filtered in a fresh Python (real file descriptors), then one more line."""
    script = ("import os, sys\nfrom edge.core.console import native_stderr_filtered\n"
              f"with native_stderr_filtered(({BANNER!r},)):\n" + "".join(f"    {l}\n" for l in code.splitlines())
              + "print('after', file=sys.stderr)\n")
    full = {k: v for k, v in os.environ.items() if k != "EDGE_AUDIO_VERBOSE"}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full, timeout=60)


NATIVE = f"""os.write(2, b{BANNER + chr(10)!r})
os.write(2, b'ERROR: the runtime could not do it\\n')
print('from Python', file=sys.stderr)
os.write(2, b'the last words')"""
REST = "ERROR: the runtime could not do it\nfrom Python\nthe last wordsafter\n"


def test_the_banner_is_left_out_and_every_other_line_reaches_stderr_in_order():
    r = _filtered(NATIVE)
    assert r.returncode == 0 and r.stderr == REST


def test_verbose_filters_nothing():
    assert _filtered(NATIVE, EDGE_AUDIO_VERBOSE="1").stderr == BANNER + "\n" + REST
