"""The bad-input corpus, continued (test_bad_input.py holds the first part and the helpers): names that make no
valid MQTT topic or string, host names no lookup can find, config text nested too deep or with lines too long, and
files that never end or never open (a FIFO, a device, an absurd size) named as a config, WAV, model, label, password
or calibration file. Each ends with one line and its exit status: 78 for the daemon's config, 2 for classify. A
FIFO case runs in a child process with a timeout: a reader blocked on the pipe fails the test instead of hanging
it. Input that must not stop the daemon at all is here too: a spool's open event dated 1e308, a full disk under
jsonl.path."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from daemonparts import LeftOpen
from edge.app.cli import main
from edge.core.files import LIMITS
from edge.core.names import MAX_HOST_CHARS, MAX_HOST_LABEL_CHARS, MAX_ID_CHARS, MAX_PREFIX_CHARS
from test_bad_input import GOLDEN, WAV_SOURCE, config_file, fill, one_line

FIFO_TIMEOUT_S = 60  # a start that is refused takes a few seconds; a reader blocked on a FIFO waits for ever

LONG = '"""' + "\\\n".join(["k" * 1000] * 70) + '"""\n'  # 70000 characters, on lines of 1000 (TOML's "\" joins them)
NAMES = {  # name: (config, needle); every one exits 78
    "device id with a tab": ('[device]\nid = "kitchen\\t1"\n', "device.id 'kitchen\\t1' contains a tab"),
    "device id with a line break": ('[device]\nid = "kitchen\\n1"\n', "contains a line break"),
    "device id with a carriage return": ('[device]\nid = "kitchen\\r"\n', "contains a carriage return"),
    "device id with NUL": ('[device]\nid = "kitchen\\u0000"\n', "contains a NUL character"),
    "device id with an escape": ('[device]\nid = "k\\u001b[31m"\n', "contains an escape character"),
    "device id with DEL": ('[device]\nid = "k\\u007f"\n', "control character U+007F"),
    "device id with a C1 control": ('[device]\nid = "k\\u0085"\n', "control character U+0085"),
    "device id with a noncharacter": ('[device]\nid = "k\\uffff"\n', "noncharacter U+FFFF"),
    "device id of 70000 characters": ("[device]\nid = " + LONG, "is 70000 characters long"),
    "device id one too long": (f"[device]\nid = '{'k' * (MAX_ID_CHARS + 1)}'\n",
                               f"is {MAX_ID_CHARS + 1} characters long (at most {MAX_ID_CHARS})"),
    "device id with #": ("[device]\nid = 'kitchen#1'\n", "contains '#'"),
    "device id with + and #": ("[device]\nid = 'k+#'\n", "contains '#' and '+'"),
    "board with a tab": ('[device]\nboard = "pi4\\tcoral"\n', "device.board 'pi4\\tcoral' contains a tab"),
    "prefix $SYS": ("[mqtt]\nprefix = '$SYS/edge'\n", "starts with '$'"),
    "prefix $ alone": ("[mqtt]\nprefix = '$edge'\n", "topics beginning with '$' are the broker's own"),
    "discovery prefix $": ("[mqtt]\ndiscovery_prefix = '$SYS'\n", "mqtt.discovery_prefix '$SYS' starts with '$'"),
    "prefix leading slash": ("[mqtt]\nprefix = '/edge'\n", "empty topic level"),
    "prefix wildcard in a level": ("[mqtt]\nprefix = 'edge/+/audio'\n", "contains '+'"),
    "prefix with a tab": ('[mqtt]\nprefix = "edge\\taudio"\n', "mqtt.prefix 'edge\\taudio' contains a tab"),
    "prefix with NUL": ('[mqtt]\nprefix = "edge\\u0000"\n', "contains a NUL character"),
    "prefix too long": (f"[mqtt]\nprefix = '{'p' * (MAX_PREFIX_CHARS + 1)}'\n",
                        f"(at most {MAX_PREFIX_CHARS})"),
    "discovery prefix double slash": ("[mqtt]\ndiscovery_prefix = 'home//assistant'\n", "empty topic level"),
    "discovery prefix with a line break": ('[mqtt]\ndiscovery_prefix = "home\\n"\n', "contains a line break"),
    "client id with a tab": ('[mqtt]\nclient_id = "edge\\t1"\n', "mqtt.client_id 'edge\\t1' contains a tab"),
    "client id with NUL": ('[mqtt]\nclient_id = "edge\\u0000"\n', "contains a NUL character"),
    "client id with a C1 control": ('[mqtt]\nclient_id = "edge\\u009b"\n', "control character U+009B"),
    "client id too long": (f"[mqtt]\nclient_id = '{'c' * 200}'\n", "mqtt.client_id 'cccc"),
    "username with a tab": ('[mqtt]\nusername = "user\\tname"\n', "mqtt.username 'user\\tname' contains a tab"),
    "username with NUL": ('[mqtt]\nusername = "user\\u0000"\n', "contains a NUL character"),
    "username with DEL": ('[mqtt]\nusername = "user\\u007f"\n', "control character U+007F"),
    "username of 70000 characters": ("[mqtt]\nusername = " + LONG, "is 70000 characters long"),
    "host with a 70-character label": (f"[mqtt]\nhost = '{'b' * 70}.lan'\n",
                                       f"has a label of 70 characters (DNS labels are at most {MAX_HOST_LABEL_CHARS})"),
    "host one too long": ("[mqtt]\nhost = '" + ".".join(["h" * 50] * 5) + "'\n",
                          f"is 254 characters long (DNS names are at most {MAX_HOST_CHARS})"),
    "host with an empty label": ("[mqtt]\nhost = 'broker..lan'\n", "has an empty label"),
    "host with a leading dot": ("[mqtt]\nhost = '.broker'\n", "has an empty label"),
    "host in brackets": ("[mqtt]\nhost = '[::1]'\n", "write an IPv6 address without them"),
    "host not IPv6": ("[mqtt]\nhost = 'fe80::zz'\n", "not an IPv6 address"),
    "host with a port": ("[mqtt]\nhost = 'broker:1883'\n", "the port is mqtt.port"),
    "host with a tab": ('[mqtt]\nhost = "broker\\tlan"\n', "may only hold letters, digits"),
    "host with NUL": ('[mqtt]\nhost = "broker\\u0000"\n', "mqtt.host 'broker\\x00' contains a NUL character"),
    "host not ASCII": ("[mqtt]\nhost = 'bröker.lan'\n", "is not a host name or an IP address"),
    "allow label with a tab": ('[detector]\nallow = ["Dog\\t"]\n', "detector.allow: the label 'Dog\\t' contains a tab"),
    "deny label with a line break": ('[detector]\ndeny = ["Dog\\n"]\n', "detector.deny: the label"),
    "threshold label with a bell": ('[detector.thresholds]\n"Dog\\u0007" = 0.5\n', "control character U+0007"),
    "allow label too long": (f"[detector]\nallow = ['{'d' * 300}']\n", "is 300 characters long"),
    "NUL in audio.file": ('[audio]\nsource = "wav"\nfile = "a\\u0000.wav"\n', "audio.file 'a\\x00.wav' contains a NUL"),
    "NUL in model.path": ('[model]\npath = "m\\u0000.tflite"\n', "model.path 'm\\x00.tflite' contains a NUL"),
    "NUL in jsonl.path": ('[jsonl]\npath = "e\\u0000.jsonl"\n', "jsonl.path 'e\\x00.jsonl' contains a NUL"),
    "NUL in ca_file": ('[mqtt]\ntls = true\nport = 8883\nca_file = "c\\u0000"\n', "mqtt.ca_file 'c\\x00' contains"),
}

TOML_SHAPES = {  # name: (config, needle); every one exits 78
    "50000-deep arrays": ("a = " + "[\n" * 50000 + "]\n" * 50000, "nested more than 32 deep (line 33)"),
    "50000-deep arrays on one line": ("a = " + "[" * 50000 + "]" * 50000, "line 1 is longer than 64 KiB"),
    "33-deep inline tables": ("a = " + "{b = " * 33 + "1" + "}" * 33 + "\n", "nested more than 32 deep"),
    "33-deep mixed": ("[detector]\nallow = " + "[{a = " * 17 + "1" + "}]" * 17 + "\n", "nested more than 32"),
    "a comment longer than 64 KiB": ("# " + "x" * (64 * 1024) + "\n[audio]\n", "line 1 is longer than 64 KiB"),
    "a value longer than 64 KiB": ("[device]\n\nid = '" + "k" * (64 * 1024) + "'\n", "line 3 is longer"),
    "brackets in strings do not count": ("[device]\nid = '" + "[" * 40 + "'\n[speaker]\n", "unknown section"),
    "brackets in comments do not count": ("# " + "{" * 40 + "\n[speaker]\n", "unknown section 'speaker'"),
}

CONFIG_FILES = {  # name: (the config file, needle); every one exits 78
    "config is /dev/zero": ("/dev/zero", "/dev/zero: is a character device, not a config file"),
    "config is /dev/null": ("/dev/null", "is a character device, not a config file"),
    "config is a directory": ("{a_directory}", "is a directory, not a config file"),
    "config is a link to /dev/zero": ("{zero_link}", "is a character device, not a config file"),
    "config too large": ("{big_config}", f"config file too large ({LIMITS['config file'] + 1} bytes; at most"),
    "config not UTF-8": ("{latin1_config}", "config file is not UTF-8 text (line 2)"),
}

DAEMON_FILES = {  # name: (config, needle): files the daemon's config names; every one exits 78
    "wav is /dev/zero": (WAV_SOURCE.replace("{miaow}", "/dev/zero"), "/dev/zero: is a character device, not a WAV"),
    "wav is /dev/urandom": (WAV_SOURCE.replace("{miaow}", "/dev/urandom"), "is a character device, not a WAV"),
    "wav is a directory": (WAV_SOURCE.replace("{miaow}", "{a_directory}"), "is a directory, not a WAV file"),
    "wav too large": (WAV_SOURCE.replace("{miaow}", "{huge_wav}"), "WAV file too large"),
    "model is /dev/zero": ("[audio]\nsource = 'stdin'\n[model]\npath = '/dev/zero'\n", "not a model file"),
    "model too large": ("[audio]\nsource = 'stdin'\n[model]\npath = '{huge_model}'\n", "model file too large"),
    "labels are /dev/zero": (WAV_SOURCE + "labels = '/dev/zero'\n", "is a character device, not a label file"),
    "labels too large": (WAV_SOURCE + "labels = '{big_labels}'\n", "label file too large"),
    "labels not UTF-8": (WAV_SOURCE + "labels = '{latin1_labels}'\n", "label file is not UTF-8 text (line 2)"),
    "password is /dev/zero": (WAV_SOURCE + "[mqtt]\nhost = '127.0.0.1'\npassword_file = '/dev/zero'\n",
                              "mqtt.password_file /dev/zero: is a character device"),
    "password too large": (WAV_SOURCE + "[mqtt]\nhost = '127.0.0.1'\npassword_file = '{big_password}'\n",
                           "password file too large"),
    "password is a directory": (WAV_SOURCE + "[mqtt]\nhost = '127.0.0.1'\npassword_file = '{a_directory}'\n",
                                "is a directory, not a password file"),
    "calibration is /dev/zero": (WAV_SOURCE + "[calibration]\nfile = '/dev/zero'\n",
                                 "calibration.file /dev/zero: is a character device"),
    "calibration too large": (WAV_SOURCE + "[calibration]\nfile = '{big_calibration}'\n", "calibration file too"),
    "calibration nested too deep": (WAV_SOURCE + "[calibration]\nfile = '{deep_calibration}'\n",
                                    "nested more than 32 deep"),
    "ca file is a FIFO": ("[mqtt]\ntls = true\nport = 8883\nca_file = '{fifo}'\n",
                          "is a named pipe (FIFO), not a file"),
    "key file is a directory": ("[mqtt]\ntls = true\nport = 8883\ncert_file = '{class_map}'\nkey_file = "
                                "'{a_directory}'\n", "mqtt.key_file"),
}

CLASSIFY_FILES = {  # name: (argv after classify, needle); every one exits 2
    "wav is /dev/zero": (["--model", "{twin}", "/dev/zero"], "/dev/zero: is a character device, not a WAV file"),
    "wav is /dev/null": (["--model", "{twin}", "/dev/null"], "is a character device, not a WAV file"),
    "wav is a link to /dev/zero": (["--model", "{twin}", "{zero_link}"], "is a character device, not a WAV"),
    "wav too large": (["--model", "{twin}", "{huge_wav}"], "WAV file too large"),
    "model is /dev/zero": (["--model", "/dev/zero", "{miaow}"], "is a character device, not a model file"),
    "model too large": (["--model", "{huge_model}", "{miaow}"], "model file too large"),
    "labels are /dev/zero": (["--model", "{twin}", "--labels", "/dev/zero", "{miaow}"], "not a label file"),
    "labels too large": (["--model", "{twin}", "--labels", "{big_labels}", "{miaow}"], "label file too large"),
    "labels not UTF-8": (["--model", "{twin}", "--labels", "{latin1_labels}", "{miaow}"], "is not UTF-8 text"),
    "labels with a field beyond csv's limit": (["--model", "{twin}", "--labels", "{wide_labels}", "{miaow}"],
                                               "malformed class map"),
    "manifest too large": (["--model", "{big_manifest}", "{miaow}"], "manifest too large"),
    "manifest not an object": (["--model", "{list_manifest}", "{miaow}"], "a JSON object was expected"),
    "manifest nested too deep": (["--model", "{deep_manifest}", "{miaow}"], "unreadable manifest"),
}

FIFO_RUN = {  # name: (config, needle): a FIFO the daemon's config names; exits 78 within FIFO_TIMEOUT_S
    "config": (None, "is a named pipe (FIFO), not a config file"),
    "wav": (WAV_SOURCE.replace("{miaow}", "{fifo}"), "is a named pipe (FIFO), not a WAV file"),
    "model": ("[audio]\nsource = 'stdin'\n[model]\npath = '{fifo}'\n", "is a named pipe (FIFO), not a model file"),
    "labels": (WAV_SOURCE + "labels = '{fifo}'\n", "is a named pipe (FIFO), not a label file"),
    "password": (WAV_SOURCE + "[mqtt]\nhost = '127.0.0.1'\npassword_file = '{fifo}'\n", "not a password file"),
    "calibration": (WAV_SOURCE + "[calibration]\nfile = '{fifo}'\n", "not a calibration file"),
}

FIFO_CLASSIFY = {  # name: (argv after classify, needle); exits 2 within FIFO_TIMEOUT_S
    "wav": (["--model", "{twin}", "{fifo}"], "is a named pipe (FIFO), not a WAV file"),
    "model": (["--model", "{fifo}", "{miaow}"], "is a named pipe (FIFO), not a model file"),
    "labels": (["--model", "{twin}", "--labels", "{fifo}", "{miaow}"], "is a named pipe (FIFO), not a label file"),
}

ALIVE_S = 1.0  # the previous run was last alive this long after its open events began
OPEN_EVENTS = {  # name: (what is wrong with the first of two open events, the last sign of life (None: fine))
    "start 1e308": ({"start_ts": 1e308}, None),
    "start -1e308": ({"start_ts": -1e308}, None),
    "start NaN": ({"start_ts": float("nan")}, None),
    "start infinite": ({"start_ts": float("inf")}, None),
    "peak NaN": ({"peak_score": float("nan")}, None),
    "level infinite": ({"level_dbfs": float("-inf")}, None),
    "start a string": ({"start_ts": "yesterday"}, None),
    "last alive 1e308": ({}, 1e308),
    "last alive NaN": ({}, float("nan")),
}

TABLES = (NAMES, TOML_SHAPES, CONFIG_FILES, DAEMON_FILES, CLASSIFY_FILES, FIFO_RUN, FIFO_CLASSIFY, OPEN_EVENTS)


def _sparse(path: Path, size: int) -> str:
    with open(path, "wb") as f:
        f.truncate(size)  # no blocks written: the size is all that is looked at
    return str(path)


def _bundle(tmp: Path, name: str, manifest: bytes | None = None, size: int = 0) -> str:
    folder = tmp / name
    folder.mkdir()
    if manifest is None:
        _sparse(folder / "manifest.json", size)
    else:
        (folder / "manifest.json").write_bytes(manifest)
    return str(folder)


@pytest.fixture(scope="module")
def limits(tmp_path_factory, assets) -> dict:
    tmp = tmp_path_factory.mktemp("limits")
    f = {"twin": str(assets / "models" / "coral" / "yamnet_spectra_in.tflite"),
         "class_map": str(assets / "models" / "yamnet_class_map.csv"),
         "miaow": str(assets / "audio" / "miaow_16k.wav"), "fifo": str(tmp / "pipe"), "zero_link": str(tmp / "z")}
    os.mkfifo(f["fifo"])
    os.symlink("/dev/zero", f["zero_link"])
    (tmp / "dir").mkdir()
    f["a_directory"] = str(tmp / "dir")
    f["huge_wav"] = _sparse(tmp / "huge.wav", LIMITS["WAV file"] + 1)
    f["huge_model"] = _sparse(tmp / "huge.tflite", LIMITS["model file"] + 1)
    f["big_config"] = _sparse(tmp / "big.toml", LIMITS["config file"] + 1)
    f["big_calibration"] = _sparse(tmp / "big_calibration.toml", LIMITS["calibration file"] + 1)
    f["big_labels"] = str(tmp / "big.txt")
    Path(f["big_labels"]).write_bytes(b"Dog\n" * (LIMITS["label file"] // 4 + 1))
    f["big_password"] = str(tmp / "password")
    Path(f["big_password"]).write_bytes(b"p" * (LIMITS["password file"] + 1))
    for name, text in (("latin1_config", b"[device]\nid = 'caf\xe9'\n"), ("latin1_labels", b"Dog\nCaf\xe9\n"),
                       ("wide_labels", b"index,mid,display_name\n0,/m/0," + b"x" * 200_000 + b"\n"),
                       ("deep_calibration", b"[detector.thresholds]\nDog = " + b"[" * 40 + b"]" * 40 + b"\n")):
        f[name] = str(tmp / name)
        Path(f[name]).write_bytes(text)
    f["big_manifest"] = _bundle(tmp, "big_manifest", size=LIMITS["manifest"] + 1)
    f["list_manifest"] = _bundle(tmp, "list_manifest", b"[]")
    f["deep_manifest"] = _bundle(tmp, "deep_manifest", b"[" * 100_000 + b"]" * 100_000)
    return f


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_name_that_makes_no_topic_or_string_is_refused_at_load(name, tmp_path, capsys):
    body, needle = NAMES[name]
    one_line(capsys, main(["run", "--config", str(config_file(tmp_path, "names", body))]), 78, needle)


@pytest.mark.parametrize("name", sorted(TOML_SHAPES))
def test_config_text_too_deep_or_too_wide_is_refused_before_it_is_parsed(name, tmp_path, capsys):
    body, needle = TOML_SHAPES[name]
    one_line(capsys, main(["run", "--config", str(config_file(tmp_path, "shape", body))]), 78, needle)


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_a_config_that_is_no_regular_file_or_too_large_is_refused(name, limits, capsys):
    path, needle = CONFIG_FILES[name]
    one_line(capsys, main(["run", "--config", path.format(**limits)]), 78, needle)


@pytest.mark.parametrize("name", sorted(DAEMON_FILES))
def test_a_file_the_config_names_that_never_ends_is_refused(name, limits, tmp_path, capsys):
    body, needle = DAEMON_FILES[name]
    path = config_file(tmp_path, "files", body.format(**limits))
    one_line(capsys, main(["run", "--config", str(path)]), 78, needle)


@pytest.mark.parametrize("name", sorted(CLASSIFY_FILES))
def test_classify_refuses_a_file_that_never_ends(name, limits, capsys):
    argv, needle = CLASSIFY_FILES[name]
    one_line(capsys, main(["classify", *fill(argv, limits)]), 2, needle)


@pytest.mark.parametrize("name", sorted(FIFO_RUN))
def test_a_fifo_in_the_config_is_refused_without_waiting(name, limits, tmp_path):
    body, needle = FIFO_RUN[name]
    path = limits["fifo"] if body is None else config_file(tmp_path, "fifo", body.format(**limits))
    r = run_cli("run", "--config", path, timeout=FIFO_TIMEOUT_S)  # TimeoutExpired: it waited on the pipe
    assert_one_line_error(r, 78, needle)


@pytest.mark.parametrize("name", sorted(FIFO_CLASSIFY))
def test_classify_refuses_a_fifo_without_waiting(name, limits):
    argv, needle = FIFO_CLASSIFY[name]
    r = run_cli("classify", *fill(argv, limits), timeout=FIFO_TIMEOUT_S)
    assert_one_line_error(r, 2, needle)


@pytest.fixture(scope="module")
def classifier(limits):
    from edge.model.classifier import Classifier
    return Classifier.open(limits["twin"], limits["class_map"], "cpu")


@pytest.mark.parametrize("name", sorted(OPEN_EVENTS))
def test_an_open_event_no_date_can_hold_is_skipped_and_counted_never_a_failed_start(name, limits, classifier,
                                                                                      caplog):
    from edge.app.daemon import Daemon
    from edge.audio import make_source
    from edge.audio.capture import Capture
    from edge.config import parse_config
    change, bad_alive = OPEN_EVENTS[name]
    good = dict(json.loads(GOLDEN.read_text()), type="start", end_ts=None, end_time=None)
    bad = dict(good, event_id="0" * 32, label="Dog", **change)
    cfg = parse_config((WAV_SOURCE + "[mqtt]\nenabled = false\n").format(**limits))
    sink = LeftOpen([bad, good], good["start_ts"] + ALIVE_S if bad_alive is None else bad_alive)
    daemon = Daemon(cfg, classifier, Capture(make_source(cfg.audio), cfg.audio), sink=sink)
    assert daemon.run() == 0
    ended = [e for e in sink.events if e.cut_short]
    assert daemon.skipped_open_events == (1 if change else 0)
    assert [e.event_id for e in ended] == ([] if change else [bad["event_id"]]) + [good["event_id"]]
    assert {e.duration_s for e in ended} == {ALIVE_S if bad_alive is None else 0.0}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == daemon.skipped_open_events + (bad_alive is not None), errors
    assert all("\n" not in line and line.startswith("spool:") for line in errors), errors


def test_a_full_disk_under_jsonl_path_drops_lines_counts_them_and_the_daemon_goes_on(limits, caplog):
    from edge.app.startup import build
    from edge.config import parse_config
    body = WAV_SOURCE + "[mqtt]\nenabled = false\n[jsonl]\nenabled = true\npath = '/dev/full'\n"
    daemon = build(parse_config(body.format(**limits), "full.toml"))
    assert daemon.run() == 0
    m = daemon.metrics()
    assert daemon.events >= 2 and m["jsonl_dropped"] == daemon.events and m["jsonl_written"] == 0, m
    assert "No space left on device" in m["jsonl_problem"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "/dev/full" in errors[0] and "cannot write event lines" in errors[0], errors
