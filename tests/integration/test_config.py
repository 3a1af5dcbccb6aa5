"""The daemon's configuration: typed, validated, frozen; errors name the key and the file and exit 78."""

from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from edge import config
from edge.config import MAX_TOML_DEPTH, load_config, mqtt_password, parse_config
from edge.core.errors import ConfigError
from edge.core.names import MAX_HOST_CHARS, MAX_HOST_LABEL_CHARS, MAX_ID_CHARS, MAX_PREFIX_CHARS

PROFILES = sorted((ROOT / "edge" / "firmware" / "profiles").glob("*.toml"))


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_every_board_profile_is_valid(profile):
    cfg = load_config(profile)
    assert cfg.mqtt.enabled
    for view in cfg.views():  # each source of a [[sources]] profile as the daemon sees it
        assert view.audio.source in ("alsa", "url") and view.detector.allow, view.source_id
        if view.audio.source == "url":  # a camera: placeholder credentials, never real ones
            assert ":CHANGE-ME@" in view.audio.url and "CHANGE-ME" not in view.audio.describe()


def test_a_profile_shows_several_microphones_and_cameras():
    cfg = load_config(ROOT / "edge" / "firmware" / "profiles" / "pi5-usb-coral-4-sources.toml")
    kinds = [s.audio.source for s in cfg.sources]
    assert kinds.count("alsa") == 2 and kinds.count("url") == 2
    assert len({tuple(s.detector.allow) for s in cfg.sources}) == 4  # each its own allow list
    r = run_cli("profiles")
    assert r.code == 0 and "pi5-usb-coral-4-sources" in r.out.split()


def test_board_profiles_cover_the_boards():
    names = {p.stem for p in PROFILES}
    assert {"pi4-usb-coral", "pi5-pcie-coral", "coral-devboard", "pi-zero-2w"} <= names


@pytest.mark.parametrize("text,needle", [
    ("[audio]\nrate = 16000\n", "unknown key 'audio.rate'"),
    ("[sound]\n", "unknown section 'sound'"),
    ("[audio]\nrate_hz = 'fast'\n", "audio.rate_hz must be an integer"),
    ("[audio]\nrate_hz = 1000\n", "audio.rate_hz must be between 8000 and 384000"),
    ("[mqtt]\nprotocol = '4'\n", "mqtt.protocol must be one of"),
    ("[detector]\nthresholds = { Dog = 2 }\n", "detector.thresholds.'Dog' must be a number between 0 and 1"),
    ("[audio]\nsource = 'wav'\n", "audio.file is required"),
    ("[audio\n", "not valid TOML"),
    ("[mqtt]\nenabled = 'yes'\n", "mqtt.enabled must be true or false"),
    ("[mqtt]\ntop_hold_seconds = -1\n", "mqtt.top_hold_seconds must be between 0 and 3600"),
])
def test_bad_values_name_the_key_and_the_file(text, needle):
    with pytest.raises(ConfigError, match="^my.toml: .*" + needle.replace("(", r"\(").replace(".", r"\.")):
        parse_config(text, "my.toml")


def test_integers_are_accepted_for_numbers():
    assert parse_config("[model]\nhop_seconds = 1\n").model.hop_seconds == 1.0


def test_password_sources_in_order(tmp_path, monkeypatch):
    cfg = parse_config("[mqtt]\nusername = 'u'\n").mqtt
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("EDGE_AUDIO_MQTT_PASSWORD", "from-env")
    assert mqtt_password(cfg) == "from-env"
    (tmp_path / "mqtt_password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert mqtt_password(cfg) == "from-credential"
    (tmp_path / "pw").write_text("from-file\n")
    cfg = parse_config(f"[mqtt]\npassword_file = '{tmp_path / 'pw'}'\n").mqtt
    assert mqtt_password(cfg) == "from-file"
    cfg = parse_config(f"[mqtt]\npassword_file = '{tmp_path / 'nope'}'\n").mqtt
    with pytest.raises(ConfigError, match="password_file"):
        mqtt_password(cfg)


def _run(tmp_path: Path, text: str, **kw):
    cfg = tmp_path / "edge.toml"
    cfg.write_text(text)
    return run_cli("run", "--config", cfg, **kw)


def test_run_exits_78_on_config_problems(tmp_path, coral_twin):
    r = run_cli("run", "--config", tmp_path / "missing.toml")
    assert_one_line_error(r, 78, "config file not found")
    r = _run(tmp_path, "[audio]\nrate_hz = 'x'\n")
    assert_one_line_error(r, 78, "edge.toml: audio.rate_hz must be an integer")
    r = _run(tmp_path, f"[model]\npath = '{tmp_path / 'nomodel.tflite'}'\n[mqtt]\nenabled = false\n")
    assert_one_line_error(r, 78, "model", "not found")
    r = _run(tmp_path, f"[model]\npath = '{coral_twin}'\n[detector]\nallow = ['Dgo']\n[mqtt]\nenabled = false\n"
                       "[audio]\nsource = 'stdin'\n")
    assert_one_line_error(r, 78, "detector.allow: unknown label 'Dgo'")
    r = _run(tmp_path, f"[model]\npath = '{coral_twin}'\n[detector]\ndeny = ['dog']\nallow = ['Cat']\n"
                       "[mqtt]\nenabled = false\n[audio]\nsource = 'wav'\nfile = '/nonexistent.wav'\n")
    assert_one_line_error(r, 78, "audio", "/nonexistent.wav")


def test_wav_replay_without_mqtt_prints_events(tmp_path, assets, coral_twin):
    import json
    r = _run(tmp_path, f"[model]\npath = '{coral_twin}'\n[detector]\nallow = ['Cat']\n[mqtt]\nenabled = false\n"
                       f"[audio]\nsource = 'wav'\nfile = '{assets / 'audio' / 'miaow_16k.wav'}'\nrealtime = false\n")
    assert r.code == 0, r.err
    events = [json.loads(l) for l in r.out.splitlines()]
    assert [e["type"] for e in events] == ["start", "end"] and events[0]["label"] == "Cat"


@pytest.mark.parametrize("mode", ["system", "user"])
def test_systemd_units_verify_as_rendered_for_a_prefix(tmp_path, mode):
    """The units a release installs, written for its prefix, pass `systemd-analyze verify` (offline)."""
    import shutil
    import subprocess
    from edge.app.release.store import Layout
    from edge.app.release.service import Service
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    layout = Layout.at(str(tmp_path / "prefix"))
    layout.create()
    (layout.secrets / "mqtt_password").write_text("pw")
    unit = Service.choose(mode, layout).unit_text()
    assert "RestartPreventExitStatus=78" in unit and "Type=notify" in unit and "WatchdogSec=" in unit
    assert f"LoadCredential=mqtt_password:{layout.secrets}/mqtt_password" in unit
    # verify needs the ExecStart binary to exist: point it at one that does
    folder = tmp_path / "units"
    folder.mkdir()
    (folder / "edge-audio.service").write_text(unit.replace(f"{layout.current}/venv/bin/edge-audio", "/bin/true"))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    r = subprocess.run(["systemd-analyze", *(["--user"] if mode == "user" else []), "verify",
                        str(folder / "edge-audio.service")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)})
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_systemd_unit_exposure_is_at_most_1_5(tmp_path):
    """The system unit as a release installs it, rendered for a prefix."""
    import re
    import shutil
    import subprocess
    from edge.app.release.store import Layout
    from edge.app.release.service import Service
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    layout = Layout.at(str(tmp_path / "prefix"))
    layout.create()
    (layout.secrets / "mqtt_password").write_text("pw")
    unit = tmp_path / "edge-audio.service"
    unit.write_text(Service.choose("system", layout).unit_text())
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for edge-audio.service: ([\d.]+)", r.stdout).group(1))
    print(f"\nsystemd-analyze security: exposure {score}")
    assert score <= 1.5
    for kept in ("DeviceAllow=char-alsa rw", "DeviceAllow=char-usb_device rw", "SupplementaryGroups="):
        assert kept in unit.read_text()  # the microphone and the Coral stay reachable


def test_the_sysusers_snippet_makes_the_account_and_groups_the_unit_names(tmp_path):
    """systemd-sysusers, pointed at an empty root, creates what the system unit runs as and joins."""
    import shutil
    import subprocess
    from edge.app.release.service import SYSUSERS
    if not shutil.which("systemd-sysusers"):
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    conf = ROOT / "edge" / "firmware" / "sysusers" / SYSUSERS
    r = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    users = [l.split(":") for l in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    groups = {l.split(":")[0] for l in (tmp_path / "etc" / "group").read_text().splitlines()}
    account = next(u for u in users if u[0] == "edge-audio")
    assert account[6] == "/usr/sbin/nologin" and int(account[2]) < 1000  # a system account, no login
    unit = (ROOT / "edge" / "firmware" / "systemd" / "edge-audio.service").read_text()
    assert "User=edge-audio" in unit and {"audio", "plugdev", "apex", "edge-audio"} <= groups


LONGEST_HOST = ".".join(["a" * MAX_HOST_LABEL_CHARS] * 3 + ["b" * (MAX_HOST_CHARS - 3 * (MAX_HOST_LABEL_CHARS + 1))])


@pytest.mark.parametrize("host", ["broker", "broker.lan.", "mqtt_broker-1.example.org", "192.168.1.10", "::1",
                                  "fe80::1%eth0", LONGEST_HOST])
def test_host_names_and_addresses_a_lookup_can_use_are_accepted(host):
    assert parse_config(f"[mqtt]\nhost = '{host}'\n").mqtt.host == host


def test_names_at_their_limits_and_in_any_script_are_accepted():
    text = (f"[device]\nid = '{'k' * MAX_ID_CHARS}'\nboard = 'pi4-usb-coral'\n"
            f"[mqtt]\nprefix = 'bâtiment/{'p' * (MAX_PREFIX_CHARS - 9)}'\nclient_id = 'キッチン-1'\n"
            f"username = 'user name'\ndiscovery_prefix = 'домашний'\n[detector]\nallow = ['Dog', 'Cat']\n")
    cfg = parse_config(text)
    assert len(cfg.device_id) == MAX_ID_CHARS and len(cfg.mqtt.prefix) == MAX_PREFIX_CHARS
    assert (cfg.mqtt.client_id, cfg.mqtt.discovery_prefix) == ("キッチン-1", "домашний")


def test_nesting_up_to_the_limit_is_read_and_one_level_more_is_refused():
    def nested(depth: int) -> str:
        return "[detector]\nallow = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError, match="detector.allow must be a list of label names"):  # read, then checked
        parse_config(nested(MAX_TOML_DEPTH))
    with pytest.raises(ConfigError, match=f"nested more than {MAX_TOML_DEPTH} deep"):
        parse_config(nested(MAX_TOML_DEPTH + 1))


def test_the_readers_own_recursion_limit_is_a_config_error_too(monkeypatch):
    monkeypatch.setattr(config, "MAX_TOML_DEPTH", 10**9)  # past the cheap scan: the reader recurses
    with pytest.raises(ConfigError, match="^deep.toml: nested too deeply to read$"):
        parse_config("a = " + "[\n" * 50000 + "]\n" * 50000, "deep.toml")


def test_a_calibration_file_nested_too_deep_or_no_regular_file_is_refused(tmp_path):
    from edge.config import CalibrationConfig, load_calibration, parse_calibration
    with pytest.raises(ConfigError, match=f"^cal.toml: arrays and tables nested more than {MAX_TOML_DEPTH}"):
        parse_calibration("[detector.thresholds]\nDog = " + "[" * 40 + "]" * 40, "cal.toml")
    assert load_calibration(CalibrationConfig(file=str(tmp_path / "later.toml")), "edge.toml") is None
    with pytest.raises(ConfigError, match="^edge.toml: calibration.file /dev/zero: is a character device"):
        load_calibration(CalibrationConfig(file="/dev/zero"), "edge.toml")


def test_the_password_file_is_read_up_to_its_limit(tmp_path, monkeypatch):
    from edge.core.files import LIMITS
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("p" * LIMITS["password file"] + "\n")
    cfg = parse_config(f"[mqtt]\npassword_file = '{pw}'\n").mqtt
    with pytest.raises(ConfigError, match="^edge.toml: mqtt.password_file .*: password file too large"):
        mqtt_password(cfg, "edge.toml")
    pw.write_text("p" * LIMITS["password file"])
    assert mqtt_password(cfg) == "p" * LIMITS["password file"]


def test_only_one_source_reads_standard_input():
    text = "[[sources]]\nid = 'a'\nsource = 'stdin'\n[[sources]]\nid = 'b'\nsource = 'stdin'\n"
    with pytest.raises(ConfigError, match=r"^x\.toml: sources\.b\.source = 'stdin': only one source can read standard "
                                          r"input \(sources\.a does\)$"):
        parse_config(text, "x.toml")
