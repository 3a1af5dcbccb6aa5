"""`edge-audio recorder`'s settings: the command line over the config file's [recorder] table over Options'
own defaults (one place for each), and a setting that cannot work is one line: 78 for the file, 2 for a flag."""

from __future__ import annotations

from conftest import assert_one_line_error, run_cli
from edge.app.cli import build_parser
from edge.app.recorder.command import build_options
from edge.app.recorder.options import Options
from edge.core.files import MIB


def _options(*argv: str, state=None, monkeypatch=None) -> Options:
    if monkeypatch is not None:
        monkeypatch.setenv("EDGE_AUDIO_HOME", str(state))
    return build_options(build_parser().parse_args(["recorder", *map(str, argv)]))


def test_the_file_gives_what_the_command_line_does_not_and_the_rest_are_the_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "recorder.toml"
    cfg.write_text('[recorder]\nhost = "broker.lan"\nport = 1884\ngroup = "site-a"\nclip-max-mb = 2\n'
                   'http = "none"\nsession_expiry_seconds = 600\n')
    o = _options("--config", cfg, "--port", 1885, state=tmp_path / "state", monkeypatch=monkeypatch)
    assert (o.host, o.port, o.group, o.clip_max_bytes, o.http, o.session_expiry_s) == \
        ("broker.lan", 1885, "site-a", 2 * MIB, "", 600)
    d = Options()
    assert (o.prefix, o.client_id, o.retention_days, o.token) == (d.prefix, d.client_id, d.retention_days, None)
    assert o.db == f"sqlite:///{tmp_path / 'state' / 'recorder.db'}"
    plain = _options(state=tmp_path / "state", monkeypatch=monkeypatch)
    assert (plain.host, plain.port, plain.http, plain.clip_max_bytes) == (d.host, d.port, d.http, d.clip_max_bytes)


def test_a_file_or_flag_that_cannot_work_is_one_line(tmp_path):
    env = {"EDGE_AUDIO_HOME": str(tmp_path / "state")}
    bad = tmp_path / "bad.toml"
    bad.write_text("[recorder]\nhots = 'x'\n")
    assert_one_line_error(run_cli("recorder", "--config", bad, env=env), 78, "recorder.hots")
    bad.write_text("[recorder\n")
    assert_one_line_error(run_cli("recorder", "--config", bad, env=env), 78, str(bad))
    bad.write_text("[recorder]\nport = 'many'\n")
    assert_one_line_error(run_cli("recorder", "--config", bad, env=env), 78, "recorder.port")
    assert_one_line_error(run_cli("recorder", "--http", "0.0.0.0:8480", env=env), 2, "--token-file")
    assert_one_line_error(run_cli("recorder", "--out", tmp_path / "x.csv", env=env), 2, "--export")
    r = run_cli("recorder", "--export", "csv", env=env)
    assert r.code == 0 and r.out.startswith("event_id,device_id,source,label"), r.err
