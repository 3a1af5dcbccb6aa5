"""What the url source says when ffmpeg is gone: the most telling stderr line, credentials blanked, and whether the
capture thread retries slowly (a refused login, a host that cannot be reached before any audio came)."""

from __future__ import annotations

from edge.audio.url import ffmpeg_command, lost, telling_line, timeout_options

URL = "rtsp://admin:hunter2@cam.lan:554/stream1?token=abc123"
NAME = "stream rtsp://***@cam.lan:554/stream1?token=***"


def _lost(lines, status=1, got_audio=False, ran_s=0.2):
    return lost(NAME, URL, status, lines, got_audio, ran_s, timeout_s=5.0, slow_s=30.0)


def _slow(exc):
    return getattr(exc, "retry_after", None)


def test_a_refused_login_outranks_every_other_line_and_asks_for_a_slow_retry():
    lines = ["[rtsp @ 0x5562de3bc940] method DESCRIBE failed: 401 Unauthorized",
             f"{URL}: Server returned 401 Unauthorized (authorization failed)"]
    assert telling_line(lines, URL) == ("Server returned 401 Unauthorized (authorization failed)", "login")
    exc = _lost(lines)
    assert str(exc) == (f"{NAME}: ffmpeg exited with status 1: Server returned 401 Unauthorized (authorization "
                        "failed); the login was refused (check the user and password in the url): retrying every 30 s")
    assert exc.retry_after == 30.0
    assert _lost([f"{URL}: Server returned 403 Forbidden (access denied)"]).retry_after == 30.0


def test_credentials_are_blanked_wherever_ffmpeg_repeats_them():
    lines = ["[tcp @ 0x55ff29442800] Connection to tcp://cam.lan:554?timeout=5000000 failed: No route to host",
             "rtsp://admin:hunter2@cam.lan:554/stream1?token=abc123 again: something odd",
             "Error opening input file rtsp://admin:hunter2@cam.lan/other?token=abc123.",
             f"{URL}: Input/output error"]
    for pick in (lines[1:3], lines[2:], lines):
        text = str(_lost(pick))
        assert "hunter2" not in text and "abc123" not in text and "admin" not in text, text
        assert "\n" not in text
    assert "No route to host" in str(_lost(lines))


def test_the_connection_line_beats_the_generic_input_output_error():
    lines = ["[tcp @ 0x55be429b4240] Failed to resolve hostname cam.lan: Name or service not known",
             f"{URL}: Input/output error"]
    assert telling_line(lines, URL) == ("Failed to resolve hostname cam.lan: Name or service not known", "unreachable")
    lines = ["[tcp @ 0x5632ac4c8200] Connection to tcp://127.0.0.1:18556 failed: Connection refused",
             f"{URL}: Connection refused"]
    exc = _lost(lines)
    assert str(exc) == (f"{NAME}: ffmpeg exited with status 1: Connection refused; the host cannot be reached: "
                        "retrying every 30 s")
    assert exc.retry_after == 30.0


def test_other_failures_take_the_normal_backoff():
    exc = _lost(["[aist#0:0/pcm_s16le @ 0x1] Error while decoding stream: Invalid data",
                 f"{URL}: Server returned 404 Not Found", "Conversion failed!"])
    assert str(exc) == f"{NAME}: ffmpeg exited with status 1: Server returned 404 Not Found"
    assert _slow(exc) is None
    # only a generic line: it is still said
    assert str(_lost([f"{URL}: Input/output error"])).endswith("status 1: Input/output error")


def test_a_stream_that_played_and_then_timed_out_is_reopened_at_the_normal_pace():
    exc = _lost([f"{URL}: Connection timed out"], got_audio=True, ran_s=60)
    assert str(exc) == f"{NAME}: ffmpeg exited with status 1: Connection timed out"
    assert _slow(exc) is None


def test_the_end_of_a_stream_a_kill_and_a_silent_server():
    assert str(_lost([], status=0, got_audio=True)) == f"{NAME}: ffmpeg exited with status 0 (the stream ended)"
    assert str(_lost([], status=-9)) == f"{NAME}: ffmpeg was killed by signal 9"
    assert _slow(_lost([], status=-15, ran_s=60)) is None  # we stopped it: no verdict on the host
    # RTSP to a server that accepts and never answers says only "Invalid data" when its timeout runs out
    exc = _lost([f"{URL}: Invalid data found when processing input"], ran_s=5.1)
    assert str(exc) == (f"{NAME}: ffmpeg exited with status 1: no answer within 5 s (Invalid data found when "
                        "processing input); the host cannot be reached: retrying every 30 s")
    assert exc.retry_after == 30.0
    assert _slow(_lost([f"{URL}: Invalid data found when processing input"], ran_s=0.3)) is None


def test_the_network_timeout_each_protocol_takes():
    assert timeout_options("rtsp://cam/s", 5) == ["-rtsp_transport", "tcp", "-timeout", "5000000"]
    assert timeout_options("HTTP://radio/s", 2.5) == ["-rw_timeout", "2500000"]
    assert timeout_options("rtp://239.0.0.1:5004", 5) == []
    argv = ffmpeg_command("/usr/bin/ffmpeg", "http://radio/s", 5)
    assert argv[argv.index("-i") + 1] == "http://radio/s"
    assert argv[-8:] == ["-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"]
