"""A corpus of bad input, run as users would meet it: models, WAV files, labels, daemon configs (MQTT settings
included), command-line numbers, spool files. Every case must end with one clear line and the documented exit
status (2 bad input, 78 daemon configuration), never a traceback; a bad spool must never prevent a start."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from edge.app.cli import main
from edge.core.wavfile import write_wav


def wav(tmp: Path, name: str, fmt=1, channels=1, rate=16000, bits=16, data: bytes | None = None,
        extra_chunks: bytes = b"", fmt_size=16, omit_data=False) -> Path:
    data = data if data is not None else np.zeros(16000, "<i2").tobytes()
    block = channels * max(bits, 8) // 8
    body = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)[:fmt_size]
    chunks = b"fmt " + struct.pack("<I", len(body)) + body + extra_chunks
    if not omit_data:
        chunks += b"data" + struct.pack("<I", len(data)) + data
    path = tmp / name
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


def _case_files(tmp: Path, assets: Path) -> dict:
    """Every file the cases name, made once per test module."""
    twin = assets / "models" / "coral" / "yamnet_spectra_in.tflite"
    f = {"twin": twin, "class_map": assets / "models" / "yamnet_class_map.csv",
         "miaow": assets / "audio" / "miaow_16k.wav"}
    f["empty"] = tmp / "empty.tflite"
    f["empty"].write_bytes(b"")
    f["text_model"] = tmp / "notes.tflite"
    f["text_model"].write_text("this is not a model\n")
    f["truncated_model"] = tmp / "cut.tflite"
    f["truncated_model"].write_bytes(twin.read_bytes()[:5000])
    f["image_model"] = assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite"
    f["tpu_only"] = assets / "models" / "coral" / "voice_commands_v0.8_edgetpu.tflite"
    f["no_manifest"] = tmp / "folder"
    f["no_manifest"].mkdir()
    bundle = tmp / "bundle"
    bundle.mkdir()
    shutil.copy(twin, bundle / twin.name)
    shutil.copy(f["class_map"], bundle / "yamnet_class_map.csv")
    manifest = {"schema": 1, "name": "b", "input_kind": "logmel_patch", "models": {"cpu": twin.name},
                "labels": "yamnet_class_map.csv", "files": {twin.name: "0" * 64, "yamnet_class_map.csv": "0" * 64}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    f["bad_hash_bundle"] = bundle
    broken = tmp / "broken_manifest"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    f["broken_manifest"] = broken
    f["lone_model"] = tmp / "lone" / "yamnet_spectra_in.tflite"
    f["lone_model"].parent.mkdir()
    shutil.copy(twin, f["lone_model"])
    f["labels_missing"] = tmp / "nothing.csv"
    f["labels_empty"] = tmp / "empty.csv"
    f["labels_empty"].write_text("\n\n")
    f["labels_bad_map"] = tmp / "bad_map.csv"
    f["labels_bad_map"].write_text("index,mid,display_name\nx,/m/1,Speech\n")
    f["labels_gap"] = tmp / "gap.csv"
    f["labels_gap"].write_text("index,mid,display_name\n0,/m/0,Speech\n2,/m/2,Dog\n")
    f["labels_few"] = tmp / "few.txt"
    f["labels_few"].write_text("Speech\nDog\n")
    w = tmp / "wavs"
    w.mkdir()
    f["not_riff"] = w / "not_riff.wav"
    f["not_riff"].write_bytes(b"OggS" + b"\0" * 100)
    f["tiny"] = w / "tiny.wav"
    f["tiny"].write_bytes(b"RIFF")
    f["no_fmt"] = w / "no_fmt.wav"
    f["no_fmt"].write_bytes(b"RIFF" + struct.pack("<I", 12) + b"WAVE" + b"data" + struct.pack("<I", 0))
    f["short_fmt"] = wav(w, "short_fmt.wav", fmt_size=10)
    f["zero_channels"] = wav(w, "zero_channels.wav", channels=0)
    f["many_channels"] = wav(w, "many_channels.wav", channels=65535)
    f["zero_rate"] = wav(w, "zero_rate.wav", rate=0)
    f["max_rate"] = wav(w, "max_rate.wav", rate=4294967295)
    f["mhz_rate"] = wav(w, "mhz_rate.wav", rate=1_000_000)
    f["low_rate"] = wav(w, "low_rate.wav", rate=4000)
    f["odd_rate"] = wav(w, "odd_rate.wav", rate=383999)
    f["zero_bits"] = wav(w, "zero_bits.wav", bits=0)
    f["twelve_bits"] = wav(w, "twelve_bits.wav", bits=12)
    f["huge_bits"] = wav(w, "huge_bits.wav", bits=128)
    f["float16"] = wav(w, "float16.wav", fmt=3, bits=16)
    f["mp3_in_wav"] = wav(w, "mp3.wav", fmt=0x55)
    f["no_data"] = wav(w, "no_data.wav", omit_data=True)
    f["empty_data"] = wav(w, "empty_data.wav", data=b"")
    f["odd_data"] = wav(w, "odd_data.wav", data=b"\x01")
    f["a_directory"] = w / "folder.wav"
    f["a_directory"].mkdir()
    f["fifo"] = tmp / "events.fifo"  # no reader: opening it for writing would wait for one
    os.mkfifo(f["fifo"])
    f["missing_wav"] = w / "missing.wav"
    good = w / "good.wav"
    write_wav(good, np.zeros(16000, np.int16), 16000)
    f["good_wav"] = good
    return f


def config_file(tmp: Path, name: str, body: str) -> Path:
    path = tmp / "configs" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return path


WAV_SOURCE = "[audio]\nsource = 'wav'\nfile = '{miaow}'\nrealtime = false\n[model]\npath = '{twin}'\n"
CONFIGS = {  # name: (body, needle); every one exits 78
    "toml syntax": ("[audio\nsource = 'wav'", "not valid TOML"),
    "unknown section": ("[speaker]\nvolume = 3\n", "unknown section 'speaker'"),
    "unknown key": ("[audio]\nvolume = 3\n", "unknown key 'audio.volume'"),
    "moved key": ("[mqtt]\noutbox_file = '/tmp/o.jsonl'\n", "replaced by mqtt.spool_file"),
    "wrong type": ("[model]\nthreads = 'two'\n", "model.threads must be an integer"),
    "bool as int": ("[model]\nthreads = true\n", "model.threads must be an integer"),
    "threads range": ("[model]\nthreads = 0\n", "model.threads must be between 1 and 16"),
    "hop range": ("[model]\nhop_seconds = 0.001\n", "model.hop_seconds must be between"),
    "rate too low": ("[audio]\nrate_hz = 4000\n", "audio.rate_hz must be between 8000 and 384000"),
    "rate too high": ("[audio]\nrate_hz = 1000000\n", "audio.rate_hz must be between 8000 and 384000"),
    "channels": ("[audio]\nchannels = 0\n", "audio.channels must be between 1 and 8"),
    "format": ("[audio]\nformat = 'U8'\n", "audio.format must be one of"),
    "source": ("[audio]\nsource = 'pulse'\n", "audio.source must be one of"),
    "wav without file": ("[audio]\nsource = 'wav'\n", "audio.file is required"),
    "reopen order": ("[audio]\nreopen_min_seconds = 10\nreopen_max_seconds = 1\n", "reopen_min_seconds is larger"),
    "threshold range": ("[detector]\nthreshold = 1.5\n", "detector.threshold must be between 0.0 and 1.0"),
    "thresholds value": ("[detector.thresholds]\nDog = 'high'\n", "detector.thresholds.'Dog' must be a number"),
    "allow type": ("[detector]\nallow = [1, 2]\n", "detector.allow must be a list of label names"),
    "unknown label": (WAV_SOURCE + "[detector]\nallow = ['Do']\n[mqtt]\nenabled = false\n",
                      "unknown label 'Do'; did you mean"),
    "unknown deny label": (WAV_SOURCE + "[detector]\ndeny = ['Barking dog']\n[mqtt]\nenabled = false\n",
                           "detector.deny: unknown label"),
    "missing model": ("[audio]\nsource = 'stdin'\n[model]\npath = '/nonexistent/model.tflite'\n",
                      "model file not found"),
    "corrupt model": ("[audio]\nsource = 'stdin'\n[model]\npath = '{truncated_model}'\n", "truncated or corrupt"),
    "missing wav": ("[audio]\nsource = 'wav'\nfile = '/nonexistent.wav'\n[model]\npath = '{twin}'\n",
                    "WAV file not found"),
    "absurd wav": ("[audio]\nsource = 'wav'\nfile = '{max_rate}'\n[model]\npath = '{twin}'\n", "4294967295 Hz"),
    "empty host": ("[mqtt]\nhost = ''\n", "mqtt.host '' is not a host name"),
    "long host": ("[mqtt]\nhost = '" + "a" * 300 + "'\n", "is not a host name"),
    "host with space": ("[mqtt]\nhost = 'broker lan'\n", "is not a host name"),
    "host with slash": ("[mqtt]\nhost = 'mqtt://broker'\n", "is not a host name"),
    "port zero": ("[mqtt]\nport = 0\n", "mqtt.port must be between 1 and 65535"),
    "port high": ("[mqtt]\nport = 70000\n", "mqtt.port must be between 1 and 65535"),
    "protocol": ("[mqtt]\nprotocol = '4'\n", "mqtt.protocol must be one of"),
    "keepalive": ("[mqtt]\nkeepalive_seconds = 1\n", "mqtt.keepalive_seconds must be between"),
    "policy": ("[mqtt]\noutbox_policy = 'drop_all'\n", "mqtt.outbox_policy must be one of"),
    "prefix wildcard #": ("[mqtt]\nprefix = 'edge/#'\n", "cannot be part of a topic name"),
    "prefix wildcard +": ("[mqtt]\nprefix = 'edge+audio'\n", "cannot be part of a topic name"),
    "prefix empty level": ("[mqtt]\nprefix = 'edge//audio'\n", "empty topic level"),
    "prefix trailing slash": ("[mqtt]\nprefix = 'edge/'\n", "empty topic level"),
    "empty prefix": ("[mqtt]\nprefix = ''\n", "mqtt.prefix must not be empty"),
    "discovery wildcard": ("[mqtt]\ndiscovery_prefix = 'home#'\n", "cannot be part of a topic name"),
    "device id wildcard": ("[device]\nid = 'kitchen+1'\n", "device.id 'kitchen+1' contains '+'"),
    "device id slash": ("[device]\nid = 'house/kitchen'\n", "device.id 'house/kitchen' contains '/'"),
    "plaintext to tls port": ("[mqtt]\nport = 8883\n", "8883 is MQTT over TLS"),
    "tls files without tls": ("[mqtt]\nca_file = '{class_map}'\n", "mqtt.ca_file is set but mqtt.tls = false"),
    "missing ca": ("[mqtt]\ntls = true\nport = 8883\nca_file = '/nonexistent/ca.crt'\n",
                   "mqtt.ca_file /nonexistent/ca.crt: not found"),
    "cert without key": ("[mqtt]\ntls = true\nport = 8883\ncert_file = '{class_map}'\n", "go together"),
    "password file missing": ("[mqtt]\nusername = 'u'\npassword_file = '/nonexistent/pw'\n", "password_file"),
    "section not a table": ("mqtt = 3\n", "[mqtt] must be a table"),
    "jsonl to a fifo": (WAV_SOURCE + "[mqtt]\nenabled = false\n[jsonl]\nenabled = true\npath = '{fifo}'\n",
                        "a FIFO or socket"),
}

ARGS = {  # name: (argv, needle); every one exits 2
    "threads negative": (["classify", "{miaow}", "--threads", "-1"], "--threads -1"),
    "threads zero": (["classify", "{miaow}", "--threads", "0"], "--threads 0"),
    "threads huge": (["classify", "{miaow}", "--threads", "999"], "--threads 999"),
    "threads text": (["classify", "{miaow}", "--threads", "two"], "--threads"),
    "top-k zero": (["classify", "{miaow}", "--top-k", "0"], "--top-k 0"),
    "top-k huge": (["classify", "{miaow}", "--top-k", "100000"], "--top-k 100000"),
    "hop zero": (["classify", "{miaow}", "--hop", "0"], "hop 0.0 s is out of range"),
    "hop huge": (["classify", "{miaow}", "--hop", "100"], "hop 100.0 s is out of range"),
    "hop nan": (["classify", "{miaow}", "--hop", "nan"], "out of range"),
    "hop text": (["classify", "{miaow}", "--hop", "abc"], "--hop"),
    "delegate unknown": (["classify", "{miaow}", "--delegate", "gpu"], "bad delegate 'gpu'"),
    "delegate device": (["classify", "{miaow}", "--delegate", "edgetpu:usb:x"], "the index must be a number"),
    "delegate bus": (["classify", "{miaow}", "--delegate", "edgetpu:spi"], "bad Edge TPU device"),
    "backend unknown": (["classify", "{miaow}", "--model", "{twin}", "--backend", "onnx"], "unknown backend"),
    "no files": (["classify"], "the following arguments are required"),
    "unknown command": (["listen"], "invalid choice"),
    "unknown option": (["classify", "{miaow}", "--fast"], "unrecognized arguments"),
    "monitor port": (["monitor", "--port", "0"], "--port 0"),
    "monitor port high": (["monitor", "--port", "70000"], "--port 70000"),
    "monitor count": (["monitor", "--count", "-1"], "must not be negative"),
    "monitor timeout": (["monitor", "--timeout", "-5"], "must not be negative"),
    "bench seconds": (["bench", "--seconds", "-1"], "--seconds -1"),
    "bench threads": (["bench", "--threads", "0"], "--threads '0'"),
    "bench tolerance": (["bench", "--tolerance", "99"], "--tolerance 99"),
    "run without config": (["run"], "--config FILE is required"),
}

FILES = {  # name: (argv, needle) for `classify` with a bad model, label file or WAV; every one exits 2
    "empty model": (["--model", "{empty}", "--labels", "{class_map}", "{miaow}"], "model file is empty"),
    "text model": (["--model", "{text_model}", "--labels", "{class_map}", "{miaow}"], "not a TensorFlow Lite"),
    "truncated model": (["--model", "{truncated_model}", "--labels", "{class_map}", "{miaow}"], "truncated"),
    "image model": (["--model", "{image_model}", "--labels", "{class_map}", "{miaow}"], "unsupported input shape"),
    "tpu only, no twin": (["--model", "{tpu_only}", "--labels", "{class_map}", "{miaow}"], "has no CPU twin"),
    "tpu only, asked": (["--model", "{tpu_only}", "--labels", "{class_map}", "--delegate", "edgetpu", "{miaow}"],
                        "libedgetpu"),
    "folder without manifest": (["--model", "{no_manifest}", "{miaow}"], "no manifest.json"),
    "bundle with bad hash": (["--model", "{bad_hash_bundle}", "{miaow}"], "sha256 does not match"),
    "broken manifest": (["--model", "{broken_manifest}", "{miaow}"], "unreadable manifest"),
    "no labels beside": (["--model", "{lone_model}", "{miaow}"], "no label file beside the model"),
    "missing model": (["--model", "/nonexistent/m.tflite", "{miaow}"], "model file not found"),
    "model is a folder of nothing": (["--model", "{a_directory}", "{miaow}"], "no manifest.json"),
    "labels missing": (["--model", "{twin}", "--labels", "{labels_missing}", "{miaow}"], "label file not found"),
    "labels empty": (["--model", "{twin}", "--labels", "{labels_empty}", "{miaow}"], "label file is empty"),
    "labels malformed map": (["--model", "{twin}", "--labels", "{labels_bad_map}", "{miaow}"], "malformed class map"),
    "labels with a gap": (["--model", "{twin}", "--labels", "{labels_gap}", "{miaow}"], "indices are not"),
    "labels too few": (["--model", "{twin}", "--labels", "{labels_few}", "{miaow}"], "has 2 labels"),
    **{f"wav {name.replace('_', ' ')}": (["--model", "{twin}", "{" + name + "}"], needle) for name, needle in {
        "not_riff": "not a WAV file", "tiny": "not a WAV file", "no_fmt": "no valid 'fmt ' chunk",
        "short_fmt": "no valid 'fmt ' chunk", "zero_channels": "0 channels", "many_channels": "65535 channels",
        "zero_rate": "0 Hz", "max_rate": "4294967295 Hz", "mhz_rate": "1000000 Hz", "low_rate": "4000 Hz",
        "odd_rate": "no small ratio", "zero_bits": "0 bits per sample", "twelve_bits": "12 bits per sample",
        "huge_bits": "128 bits per sample", "float16": "16-bit float", "mp3_in_wav": "format 0x0055",
        "no_data": "no 'data' chunk", "empty_data": "holds no audio", "odd_data": "holds no audio",
        "a_directory": "is a directory", "missing_wav": "WAV file not found"}.items()},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, assets):
    return _case_files(tmp_path_factory.mktemp("bad"), assets)


def fill(items, files) -> list[str]:
    return [str(a).format(**files) for a in items]


def one_line(capsys, code: int, expected: int, needle: str) -> None:
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out, out.err
    assert code == expected, (code, out.err)
    errors = [line for line in out.err.splitlines() if "error:" in line]
    assert len(errors) == 1, out.err
    assert needle.lower() in errors[0].lower(), errors[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_daemon_config(name, files, tmp_path, capsys):
    body, needle = CONFIGS[name]
    path = config_file(tmp_path, name.replace(" ", "_"), body.format(**files))
    one_line(capsys, main(["run", "--config", str(path)]), 78, needle.format(**files))


@pytest.mark.parametrize("name", sorted(ARGS))
def test_command_line(name, files, capsys):
    argv, needle = ARGS[name]
    try:
        code = main(fill(argv, files))
    except SystemExit as exc:  # argparse's own errors leave through our one-line parser
        code = exc.code
    one_line(capsys, code, 2, needle)


@pytest.mark.parametrize("name", sorted(FILES))
def test_classify_input_file(name, files, capsys):
    argv, needle = FILES[name]
    one_line(capsys, main(["classify", *fill(argv, files)]), 2, needle)


def test_the_corpus_is_large_enough():
    from test_bad_input_limits import TABLES  # the corpus continued (names, limits, files that never end)
    sizes = [len(CONFIGS), len(ARGS), len(FILES), *map(len, TABLES)]
    assert min(sizes) > 0 and sum(sizes) >= 150, sizes


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"
OPEN_DAMAGE = {  # an open event the previous run left, and when it was last alive
    "open event dated 1e308": ({"start_ts": 1e308}, 1764500001.0),
    "open event dated -1e308": ({"start_ts": -1e308}, 1764500001.0),
    "open event dated NaN": ({"start_ts": float("nan")}, 1764500001.0),
    "last alive at 1e308": ({}, 1e308),
}


def _open_event_spool(spool: Path, damage: str) -> None:
    import sqlite3
    change, alive = OPEN_DAMAGE[damage]
    start = dict(json.loads(GOLDEN.read_text()), type="start", end_ts=None, end_time=None, **change)
    with sqlite3.connect(spool) as db:
        db.execute("CREATE TABLE open_events (label TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO open_events VALUES ('Cat', ?)", (json.dumps(start),))
        db.execute("INSERT INTO meta VALUES ('last_alive', ?)", (repr(alive),))


@pytest.mark.parametrize("damage", ["truncated record", "garbage", "null", "zero-length file", "a directory",
                                    *OPEN_DAMAGE])
def test_a_bad_spool_never_prevents_a_start(damage, files, tmp_path, capsys):
    import sqlite3
    spool = tmp_path / "spool.db"
    if damage == "a directory":
        spool.mkdir()
    elif damage == "zero-length file":
        spool.write_bytes(b"")
    elif damage == "garbage":
        spool.write_bytes(b"\x00garbage" * 500)
    elif damage in OPEN_DAMAGE:
        _open_event_spool(spool, damage)
    else:
        with sqlite3.connect(spool) as db:
            db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload TEXT)")
            db.execute("INSERT INTO outbox (topic, payload) VALUES ('e/x/events', ?)",
                       ("null" if damage == "null" else '{"type": "start", "lab',))
    port = 9  # discard: nothing listens, the events wait in the spool
    body = WAV_SOURCE.format(**files) + f"[mqtt]\nhost = '127.0.0.1'\nport = {port}\nspool_file = '{spool}'\n"
    path = config_file(tmp_path, "spool", body)
    code = main(["run", "--config", str(path), "--log-level", "error"])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err, out.err
