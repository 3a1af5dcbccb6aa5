"""What the daemon's process imports: with TLS off no OpenSSL (ssl, hashlib: libssl and libcrypto, ~5 MB resident),
no download stack (urllib.request), no numpy.ma (np.percentile's first call); with TLS on, the real ssl. Each check
runs in a fresh interpreter, since an import anywhere in the test process would hide one."""

import hashlib
import subprocess
import sys

import numpy as np

from edge.core.wavfile import write_wav
from tools.rig.daemon import write_daemon_config

OPENSSL_AND_FRIENDS = ("ssl", "_ssl", "hashlib", "_hashlib", "urllib.request", "numpy.ma")
# shutil (argparse sizes its help with it; it brings bz2 and lzma), random (retry jitter), subprocess, glob and
# sysconfig (the Edge TPU library search, which the CPU delegate never runs): 0.5 MB resident together
NOT_ON_THE_CPU_DAEMON = ("shutil", "bz2", "lzma", "random", "subprocess", "glob", "sysconfig")

DAEMON_PATH = f"""
import sys
import numpy as np
from edge.app.cli import COMMANDS, build_parser, named_command
build_parser(named_command(["run"], COMMANDS))  # what main() builds for `edge-audio run`
import edge.app.daemon
from edge.app.metrics import percentile
from edge.config import parse_config
from edge.model.bundle import sha256_file
from edge.sinks.mqtt import MqttSink
MqttSink(parse_config("[mqtt]\\nspool_file = 'none'\\n").mqtt, "pi")
sha256_file(sys.executable)
percentile(np.sort(np.arange(10, dtype=np.float32)), 99)
print(sorted(m for m in {OPENSSL_AND_FRIENDS!r} if m in sys.modules))
"""


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_the_daemon_path_with_tls_off_imports_no_openssl_no_download_stack_no_numpy_ma():
    assert _run(DAEMON_PATH) == "[]"


def test_the_daemon_on_the_cpu_delegate_keeps_no_archive_random_or_process_modules(tmp_path, coral_twin):
    wav, config = tmp_path / "quiet.wav", tmp_path / "daemon.toml"
    write_wav(wav, np.zeros(16000, np.int16), 16000)
    write_daemon_config(config, audio={"source": "wav", "file": wav}, model={"path": coral_twin, "delegate": "cpu"},
                        mqtt={"enabled": False})
    out = _run(f"""
import sys
from edge.app.cli import main
assert main(["run", "--config", {str(config)!r}]) == 0
print(sorted(m for m in {NOT_ON_THE_CPU_DAEMON!r} if m in sys.modules))
""")
    assert out.splitlines()[-1] == "[]"


def test_with_tls_on_the_client_library_gets_the_real_ssl():
    out = _run("""
import ssl
from edge.config import parse_config
from edge.sinks.mqtt import MqttSink
MqttSink(parse_config("[mqtt]\\ntls = true\\nport = 8883\\nspool_file = 'none'\\n").mqtt, "pi")
import paho.mqtt.client as client
print(client.ssl.SSLWantReadError is ssl.SSLWantReadError, client.ssl.SSLContext is ssl.SSLContext)
""")
    assert out == "True True"


def test_a_plain_client_then_ssl_loaded_in_the_same_process_sees_the_real_classes():
    out = _run("""
import sys
from edge.config import parse_config
from edge.sinks.mqtt import MqttSink
MqttSink(parse_config("[mqtt]\\nspool_file = 'none'\\n").mqtt, "pi")
import paho.mqtt.client as client
before = client.ssl.SSLWantReadError  # what paho's `except` clauses read on every non-blocking socket call
print("ssl" in sys.modules, issubclass(before, OSError))
import ssl
print(client.ssl.SSLWantReadError is ssl.SSLWantReadError, client.ssl.SSLContext is ssl.SSLContext)
""")
    assert out.splitlines() == ["False False", "True True"]


def test_the_bundle_digest_is_sha256(tmp_path):
    from edge.model.bundle import sha256_file
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_running_one_command_does_not_import_the_others():
    out = _run("""
import sys
from edge.app.cli import main
try:
    main(["run", "--help"])
except SystemExit:
    pass
print(sorted(m for m in ("edge.app.bench", "edge.app.fetch", "edge.app.release", "edge.model.assets")
             if m in sys.modules))
""")
    assert out.splitlines()[-1] == "[]"


def test_the_command_list_is_complete():
    from edge.app.cli import COMMANDS, build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)
    for name in COMMANDS:  # each one alone still parses as in the full command line
        sub = next(a for a in build_parser(name)._actions if a.dest == "command")
        assert name in sub.choices and not set(sub.choices) & (set(COMMANDS) - {name})
