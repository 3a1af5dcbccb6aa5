"""The deploy tool and a config with several [[sources]]: `--set sources.<id>.<key>` edits that source's table
(its own keys, its [sources.detector] and [sources.calibration]), and the host's validation checks each source's
label lists against the model, naming the source; what cannot be set is one line."""

from __future__ import annotations

import pytest

from edge import firmware
from edge.app.release.compose import compose_config, split_setting
from edge.config import parse_config
from edge.core.errors import InputError
from test_release_steps import host_plan, tiny_bundle

PROFILE = "pi5-usb-coral-4-sources"


def composed(*settings: str):
    return parse_config(compose_config(firmware.profile_text(PROFILE), None, list(settings)))


def test_set_addresses_a_source_by_its_id():
    cfg = composed("sources.porch.url=rtsp://viewer:pw@10.0.0.9:554/stream2", 'sources.garden.detector.allow=["Dog"]',
                   "sources.nursery.rate_hz=16000", "sources.kitchen.calibration.file=/srv/kitchen.toml",
                   "sources.garden.detector.threshold=0.3", "detector.threshold=0.6")
    s = {x.id: x for x in cfg.sources}
    assert s["porch"].audio.url == "rtsp://viewer:pw@10.0.0.9:554/stream2"
    assert s["garden"].detector.allow == ["Dog"] and s["garden"].detector.threshold == 0.3
    assert s["garden"].detector.min_level_dbfs == -70.0  # the rest of its table stays
    assert s["nursery"].audio.rate_hz == 16000 and s["kitchen"].audio.rate_hz == 48000
    assert s["kitchen"].calibration.file == "/srv/kitchen.toml" and s["porch"].calibration.file == ""
    assert s["kitchen"].detector.threshold == 0.6 and s["nursery"].detector.threshold == 0.4  # over [detector]


@pytest.mark.parametrize("setting,needle", [
    ("sources.garage.url=rtsp://h/s", 'no [[sources]] table with id = "garage"'),
    ("sources.porch.id=door", "a source's id is not set with --set"),
    ("sources.porch.mqtt.host=x", "expected SECTION.KEY=VALUE"),
    ("sources[1].url=rtsp://u:secret@h/s", "expected SECTION.KEY=VALUE"),
])
def test_what_set_cannot_address_is_one_line(setting, needle):
    with pytest.raises(InputError) as caught:
        split_setting(setting)
        composed(setting)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_an_inline_detector_table_is_not_edited():
    text = '[[sources]]\nid = "porch"\nsource = "url"\nurl = "rtsp://h/s"\ndetector = { allow = ["Dog"] }\n'
    with pytest.raises(InputError, match="inline table in the config: edit the config file"):
        compose_config(text, None, ['sources.porch.detector.allow=["Cat"]'])
    assert 'url = "rtsp://h/t"' in compose_config(text, None, ["sources.porch.url=rtsp://h/t"])


def test_the_host_checks_each_sources_labels_and_names_the_source(tmp_path):
    from tools.deploy.validate import check_release
    labels = tiny_bundle(tmp_path / "default", ("Dog", "Baby cry, infant cry", "Smoke detector, smoke alarm",
                                                "Glass", "Doorbell")) / "labels.txt"
    checked = check_release(host_plan(None, None, [], PROFILE), lambda: labels)
    assert [s.id for s in checked.config.sources] == ["kitchen", "nursery", "porch", "garden"]
    for setting, needle in ((['sources.porch.detector.allow=["Doorbel"]'],
                             "sources.porch.detector.allow: unknown label 'Doorbel'"),
                            (['sources.garden.detector.thresholds={"Dgo" = 0.4}'],
                             "sources.garden.detector.thresholds: unknown label 'Dgo'"),
                            (["sources.porch.url=ftp://viewer:pw@cam/x"], "sources.porch.url")):
        with pytest.raises(InputError) as caught:
            check_release(host_plan(None, None, setting, PROFILE), lambda: labels)
        assert needle in str(caught.value) and "nothing was sent to the device" in str(caught.value), caught.value
        assert ":pw@" not in str(caught.value)
    config = tmp_path / "site.toml"  # a --config file with sources, checked against a shipped bundle
    config.write_text('[[sources]]\nid = "hall"\ndevice = "plughw:CARD=Hall"\n[sources.detector]\nallow = ["Cat"]\n')
    bundle = tiny_bundle(tmp_path / "tiny")
    assert check_release(host_plan(config, bundle, []), lambda: None).config.sources[0].detector.allow == ["Cat"]
    with pytest.raises(InputError, match="sources.hall.detector.allow: unknown label 'Glass'"):
        check_release(host_plan(config, bundle, ['sources.hall.detector.allow=["Glass"]']), lambda: None)
