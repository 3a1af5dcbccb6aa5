"""The project wheel that deploy uploads: two builds at once (two deploys, or deploy tests on parallel workers)
each get a whole wheel, and the checkout is left as it was (setuptools builds in its source folder, so each build
works on a copy)."""

import threading
import zipfile

import pytest

from tools import REPO
from tools.deploy.wheelhouse import build_project_wheel

pytestmark = pytest.mark.slow


def test_two_builds_at_once_each_give_a_whole_wheel_and_leave_the_checkout_clean(tmp_path):
    before = {p.name for p in REPO.iterdir()}
    wheels, errors = {}, []

    def build(n):
        try:
            wheels[n] = build_project_wheel(tmp_path / f"out{n % 2}")  # two builds into one folder, one apart
        except Exception as exc:  # reported below, with the others
            errors.append(exc)
    threads = [threading.Thread(target=build, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for wheel in wheels.values():
        with zipfile.ZipFile(wheel) as z:
            assert z.testzip() is None
            names = set(z.namelist())
        assert {"edge/app/release/__main__.py", "edge/firmware/profiles/pi4-usb-coral.toml"} <= names
    assert not [p for p in (tmp_path / "out0").iterdir() if p.name.endswith(".part")]
    assert {p.name for p in REPO.iterdir()} - before == set()  # no build/ or *.egg-info left in the checkout


def test_a_wheelhouse_holding_an_earlier_build_of_the_version_still_gets_a_new_extras_wheels(tmp_path):
    """A wheelhouse made by an earlier build of the same version (its metadata without the clips extra) is filled
    by this build's requirements: soundfile comes in."""
    from tools.deploy.wheelhouse import Platform, fill
    wheel = build_project_wheel(tmp_path / "dist")
    house = tmp_path / "house"
    house.mkdir()
    stale = house / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stale, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".dist-info/METADATA"):
                data = b"\n".join(line for line in data.split(b"\n") if b"clips" not in line)
            dst.writestr(item, data)
    got = fill(house, wheel, ("clips",), Platform("x86_64", "3.11"))
    assert any(p.name.startswith("soundfile-") for p in got), [p.name for p in got]


def test_a_shared_wheelhouse_gives_each_set_of_extras_its_own_wheels_and_the_same_list_again(tmp_path, capsys):
    """A wheelhouse folder that another build filled with more extras (clips: soundfile, cffi) still gives an
    upload without them exactly its own wheels, so the release's fingerprint does not depend on the folder's past;
    asked again, it answers from its list without pip."""
    from tools.deploy.wheelhouse import Platform, fill
    wheel = build_project_wheel(tmp_path / "dist")
    house, target = tmp_path / "house", Platform("x86_64", "3.11")
    lean = fill(house, wheel, ("mqtt",), target)
    full = fill(house, wheel, ("mqtt", "clips"), target)
    again = fill(house, wheel, ("mqtt",), target)
    names = lambda files: {p.name.split("-")[0] for p in files}  # noqa: E731
    assert {"edge_audio", "numpy", "paho_mqtt"} <= names(lean) and "soundfile" not in names(lean)
    assert {"soundfile", "cffi"} <= names(full)
    assert again == lean
    assert "already holds what" in capsys.readouterr().err.splitlines()[-1]
    assert {p.name for p in house.iterdir() if not p.name.startswith(".")} == {p.name for p in full}
