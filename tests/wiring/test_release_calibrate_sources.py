"""`edge-audio release calibrate` of a release whose config has several [[sources]]: each source in turn (its own
file: calibration-<id>.toml in the state directory, or its [sources.calibration] file), the service stopped once;
a source that fails stops the step there and names itself, the ones before it keep their new calibration."""

from __future__ import annotations

import pytest

from edge.app.release.compose import set_key, toml_value
from edge.core.errors import InputError
from realdeploy import background_wav, silent_wav
from test_release_calibrate import FakeService, device, job, leftovers


def with_sources(layout, first, second, calibration: str = "") -> None:
    """The current release's config with two WAV sources, kitchen and porch, replaying `first` and `second`."""
    config = layout.current.resolve() / "config.toml"
    text = config.read_text()
    for sid, recording in (("kitchen", first), ("porch", second)):
        text += f'\n[[sources]]\nid = "{sid}"\nfile = {toml_value(str(recording))}\n'
    if calibration:
        text += f"[sources.calibration]\nfile = {toml_value(calibration)}\n"
    config.write_text(text)


def test_a_failing_source_names_itself_and_the_service_starts_again(assets, tmp_path):
    layout = device(tmp_path, assets, silent_wav(tmp_path))
    with_sources(layout, silent_wav(tmp_path), background_wav(assets))
    service, lines = FakeService(layout.state / "calibration-kitchen.toml"), []
    with pytest.raises(InputError) as caught:
        job(layout, service, lines).run(20.0)
    message = str(caught.value)
    assert message.startswith("calibration failed: sources.kitchen") and "the audio is silent" in message
    assert f"no calibration was written ({layout.state / 'calibration-kitchen.toml'})" in message
    assert any("its 2 sources in turn (kitchen, porch), 20 min each" in l for l in lines)
    assert not any(l.startswith("sources.porch:") for l in lines)  # the step stopped at the first failure
    assert [c[0] for c in service.calls] == ["stop", "start"] and not leftovers(layout)


def test_sources_that_share_one_file_or_load_none_are_refused_before_anything_stops(assets, tmp_path):
    layout = device(tmp_path, assets, silent_wav(tmp_path))
    config = layout.current.resolve() / "config.toml"
    config.write_text(set_key(config.read_text(), "calibration.file", toml_value(str(tmp_path / "one.toml"))))
    with_sources(layout, silent_wav(tmp_path), silent_wav(tmp_path))
    service = FakeService(tmp_path / "one.toml")
    with pytest.raises(InputError, match="sources kitchen and porch share the calibration file .*one.toml"):
        job(layout, service).run(5.0)
    config.write_text(set_key(config.read_text(), "calibration.file", toml_value("none")))
    with pytest.raises(InputError, match="sources.kitchen.calibration.file = 'none'.*calibration-kitchen.toml"):
        job(layout, service).run(5.0)
    assert service.calls == []


@pytest.mark.slow
def test_each_source_is_calibrated_in_turn_into_its_own_file(assets, tmp_path):
    layout = device(tmp_path, assets, background_wav(assets))
    own = tmp_path / "porch-own.toml"
    with_sources(layout, background_wav(assets), background_wav(assets), calibration=str(own))
    service, lines = FakeService(layout.state / "calibration-kitchen.toml"), []
    result = job(layout, service, lines).run(15.0)
    kitchen = layout.state / "calibration-kitchen.toml"
    assert kitchen.is_file() and own.is_file() and not (layout.state / "calibration-porch.toml").exists()
    assert set(result["sources"]) == {"kitchen", "porch"} and result["sources"]["porch"]["file"] == str(own)
    assert result["file"] == f"{kitchen}, {own}" and all(k.split(": ")[0] in ("kitchen", "porch")
                                                         for k in result["thresholds"])
    assert 'source = "source porch: 15 min live from WAV' in own.read_text()
    assert [c[0] for c in service.calls] == ["stop", "start"] and not leftovers(layout)
    assert any(l.startswith("calibration of ") and "over 2 sources" in l for l in lines)
