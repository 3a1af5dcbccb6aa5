"""`edge-audio release calibrate` wired to a fake service (no systemd as PID 1 here) and the real rest: a release
folder whose venv runs this checkout's `edge-audio calibrate` on the real Coral int8 twin, replaying real
recordings. The service is stopped before the listening and started again after it, whatever happened; the
calibration file is replaced only by a calibration that calibrated something."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from edge import firmware
from edge.app.release.calibrate_job import CalibrationJob, Interrupted
from edge.app.release.compose import set_key, toml_value
from edge.app.release.store import Layout, Release, switch
from edge.app.release.service import ServiceError
from edge.core.errors import InputError
from realdeploy import background_wav, silent_wav

OLD = '# an earlier calibration\n[detector.thresholds]\n"Dog" = 0.77\n'


class FakeService:
    """The systemd unit as the step sees it; records each call and the calibration file at that moment."""

    mode = "system"

    def __init__(self, calibration: Path, active: bool = True, why_not: str = "", start_fails: bool = False):
        self.calibration, self.active, self.why_not, self.start_fails = calibration, active, why_not, start_fails
        self.calls: list[tuple[str, str]] = []

    def _seen(self) -> str:
        return self.calibration.read_text() if self.calibration.is_file() else ""

    def why_not_running(self) -> str:
        return self.why_not

    def is_active(self) -> bool:
        return self.active

    def stop(self) -> None:
        self.calls.append(("stop", self._seen()))
        self.active = False

    def start(self) -> None:
        self.calls.append(("start", self._seen()))
        if self.start_fails:
            raise ServiceError("edge-audio.service is failed after the start; see journalctl -u edge-audio.service")
        self.active = True


def device(tmp_path: Path, assets: Path, recording: Path, realtime: bool = False) -> Layout:
    """PREFIX with one current release of this checkout: the pi4 profile replaying `recording`."""
    layout = Layout.at(str(tmp_path / "prefix"))
    layout.create()
    path = layout.releases / "20260101T000000Z-0.1.0"
    (path / "venv" / "bin").mkdir(parents=True)
    (path / "venv" / "bin" / "edge-audio").symlink_to(Path(sys.executable).parent / "edge-audio")
    text = firmware.profile_text("pi4-usb-coral")
    for key, value in (("audio.source", "wav"), ("audio.file", str(recording)),
                       ("audio.realtime", "true" if realtime else "false"), ("mqtt.enabled", "false")):
        text = set_key(text, key, toml_value(value))
    text = set_key(text, "model.path", json.dumps(str(assets / "models" / "coral" / "yamnet_spectra_in.tflite")))
    (path / "config.toml").write_text(text)
    release = Release(path.name, path, {"status": "ok"})
    release.save()
    switch(layout, release)
    (layout.state / "calibration.toml").write_text(OLD)
    return layout


def job(layout: Layout, service, lines: list[str] | None = None) -> CalibrationJob:
    said = lines if lines is not None else []
    return CalibrationJob(layout, service, said.append, relay=said.append)


def leftovers(layout: Layout) -> list[str]:
    return [p.name for p in layout.state.iterdir() if p.name.endswith(".new")]


@pytest.mark.slow
def test_stop_then_calibrate_then_start_and_the_file_is_replaced(assets, tmp_path):
    layout = device(tmp_path, assets, background_wav(assets))
    target = layout.state / "calibration.toml"
    service, lines = FakeService(target), []
    result = job(layout, service, lines).run(15.0, false_starts_per_day=2.0)
    new = target.read_text()
    assert [c[0] for c in service.calls] == ["stop", "start"]
    assert service.calls[0][1] == OLD  # stopped before anything was written
    assert service.calls[1][1] == new != OLD  # started again with the new calibration in place
    assert "[detector.thresholds]" in new and "target_false_starts_per_day = 2.0" in new
    assert result["file"] == str(target) and result["service"] == "restarted"
    assert set(result["thresholds"]) <= {"Dog", "Baby cry, infant cry", "Smoke detector, smoke alarm", "Glass",
                                         "Doorbell"} and len(result["thresholds"]) >= 3
    assert any("listening:" in l for l in lines)  # the child's progress came through as it went
    assert not any("Ctrl-C" in l for l in lines)  # here, stopping it keeps the old calibration
    assert not any(".calibration.toml." in l for l in lines) and not leftovers(layout)
    print(f"\ncalibration of 13.3 min of background: {result['seconds']} s; {result['thresholds']}")


@pytest.mark.parametrize("case", ["silent", pytest.param("too_short", marks=pytest.mark.slow)])
def test_a_failed_calibration_keeps_the_old_file_and_starts_the_service_again(assets, tmp_path, case):
    recording = silent_wav(tmp_path) if case == "silent" else background_wav(assets)
    layout = device(tmp_path, assets, recording)
    target = layout.state / "calibration.toml"
    service = FakeService(target)
    with pytest.raises(InputError) as caught:
        job(layout, service).run(20.0 if case == "silent" else 0.5)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("calibration failed: ")
    assert ("the audio is silent" if case == "silent" else "no label could be calibrated") in message
    assert f"the previous calibration is kept ({target})" in message
    assert [c[0] for c in service.calls] == ["stop", "start"] and target.read_text() == OLD
    assert not leftovers(layout)


def test_a_signal_mid_calibration_stops_it_keeps_the_old_file_and_starts_the_service(assets, tmp_path):
    """SIGTERM arrives while it listens (real time, so it would take minutes): the child is stopped before it
    writes, the service is started again and the step says so in one line (exit status 1)."""
    layout = device(tmp_path, assets, background_wav(assets), realtime=True)
    target = layout.state / "calibration.toml"
    service, lines = FakeService(target), []

    def relay(line: str) -> None:
        lines.append(line)
        if "listening to" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        CalibrationJob(layout, service, lines.append, relay=relay).run(10.0)
    assert Interrupted.exit_status == 1 and "stopped by SIGTERM" in str(caught.value)
    assert "the previous calibration is kept" in str(caught.value)
    assert [c[0] for c in service.calls] == ["stop", "start"] and target.read_text() == OLD
    assert signal.getsignal(signal.SIGTERM) == before  # the step's handlers are gone again
    config = str(layout.current.resolve() / "config.toml")
    alive = [p for p in Path("/proc").glob("[0-9]*/cmdline") if _reads(p).find(config) >= 0]
    assert alive == [] and not leftovers(layout)


def _reads(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_a_stopped_service_stays_stopped_and_a_missing_systemd_is_said(assets, tmp_path):
    layout = device(tmp_path, assets, background_wav(assets))
    target = layout.state / "calibration.toml"
    idle, lines = FakeService(target, active=False), []
    assert job(layout, idle, lines).run(15.0)["service"] == "not running"
    assert idle.calls == [] and "the service is not running: nothing to stop" in lines
    absent, lines = FakeService(target, why_not="this device has no systemctl"), []
    job(layout, absent, lines).run(15.0)
    assert absent.calls == [] and any(l.startswith("service not stopped: this device has no systemctl") for l in lines)


@pytest.mark.slow
def test_a_service_that_does_not_start_again_is_reported_after_the_calibration_is_kept(assets, tmp_path):
    layout = device(tmp_path, assets, background_wav(assets))
    target = layout.state / "calibration.toml"
    service = FakeService(target, start_fails=True)
    with pytest.raises(ServiceError, match=r"calibration written to .*calibration\.toml, but the service did not "
                                           r"start again: edge-audio.service is failed"):
        job(layout, service).run(15.0)
    assert target.read_text() != OLD and [c[0] for c in service.calls] == ["stop", "start"]


def test_nothing_is_stopped_for_input_that_cannot_work(assets, tmp_path):
    layout = device(tmp_path, assets, background_wav(assets))
    service = FakeService(layout.state / "calibration.toml")
    for minutes, target, needle in ((0.0, None, "--minutes 0"), (5.0, 0.0, "--false-starts-per-day 0")):
        with pytest.raises(InputError, match=needle):
            job(layout, service).run(minutes, target)
    config = layout.current.resolve() / "config.toml"
    config.write_text(set_key(config.read_text(), "calibration.file", toml_value("none")))
    with pytest.raises(InputError, match="calibration.file = 'none'"):
        job(layout, service).run(5.0)
    layout.current.unlink()
    with pytest.raises(InputError, match="no release is current under"):
        job(layout, service).run(5.0)
    assert service.calls == []
