"""A deploy that says "installed" means the daemon runs (real sshd device, real Mosquitto). The release's selftest is
the daemon's own start-up: what would stop `run` (a WAV file that is not there, an ALSA device that does not
exist) rejects the release in one line and the previous one stays current; a site calibration made for labels the
model does not have is ignored with its warning, and the daemon comes online."""

from __future__ import annotations

import pytest

from conftest import assert_one_line_error
from realdeploy import current_id, deploy, kit, release_daemon_online, release_info
from tools.rig.broker import Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


def args(k, dev, broker, *settings: str) -> list[str]:
    return [dev.address, "--prefix", dev.prefix, "--profile", "pi4-usb-coral", "--bundle", k.bundle,
            "--device-id", "hall", "--broker", f"127.0.0.1:{broker.port}",
            *[a for s in settings for a in ("--set", s)]]


def test_a_release_that_could_not_start_is_rejected_and_a_foreign_calibration_only_warns(rig, assets, broker):
    k, dev = kit(assets), rig.devices["dev1"]
    calibration = dev.prefix / "state" / "calibration.toml"
    calibration.parent.mkdir(parents=True)
    calibration.write_text('[calibration]\nmodel = "custom-dogs"\n\n[detector.thresholds]\n"Dog" = 0.4\n'
                           '"Barking hyena" = 0.5\n')  # the site's calibration for another bundle's labels
    r = deploy(rig, k, *args(k, dev, broker, "audio.source=wav", f"audio.file={k.clip}", "audio.realtime=true",
                             "audio.loop=true"))
    assert r.code == 0, r.err
    warned = [l for l in r.err.splitlines() if f"{calibration} ignored" in l]
    assert warned and "it was made for model custom-dogs, this daemon runs yamnet-coral" in warned[0], r.err
    assert "edge-audio calibrate" in warned[0] and "deploy --calibrate" in warned[0]
    good = current_id(dev.prefix)
    run = release_daemon_online(dev.prefix, broker)
    assert run["retained"] and run["exit"] == 0 and run["status"][0] == "online", run["log"][-600:]
    assert f"{calibration} ignored" in run["log"]
    assert calibration.is_file()  # ignored, not deleted: renewing it is the operator's call

    gone = dev.prefix / "site" / "hall.wav"
    cases = {"missing WAV": (["audio.source=wav", f"audio.file={gone}"], f"{gone}: WAV file not found"),
             "missing ALSA device": (["audio.source=alsa", "audio.device=nosuchmic"], "nosuchmic")}
    for case, (settings, reason) in cases.items():
        r = deploy(rig, k, *args(k, dev, broker, *settings))
        line = assert_one_line_error(r, 2, "rejected", "selftest: audio:", reason, f"{good} stays current")
        assert current_id(dev.prefix) == good, case
        rejected = line.split("release ", 1)[1].split()[0]
        assert release_info(dev.prefix, rejected)["status"] == "rejected", case
    run = release_daemon_online(dev.prefix, broker)  # the previous release still runs
    assert run["retained"] and run["exit"] == 0, run["log"][-600:]
