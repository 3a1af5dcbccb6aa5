"""TOML written by the kit reads back as the same values, and `--show-keys` is a config a user can paste."""

import math
import tomllib

import pytest

from edge.config import SECTIONS, describe, parse_config
from edge.core.tomltext import dumps, value


def test_values_read_back_as_written():
    tables = {"audio": {"source": "wav", "file": 'C:\\rec "one".wav', "realtime": False, "rate_hz": 16000},
              "detector": {"allow": ["Dog", "Smoke detector, smoke alarm"], "threshold": 0.5,
                           "thresholds": {"Dog": 0.4, "Baby cry, infant cry": 0.25}},
              "odd key": {"tab\tand é": "ok", "small": 1e-9, "neg": -0.0}}
    assert tomllib.loads(dumps(tables)) == tables


def test_infinities_and_nan_are_toml_words():
    assert tomllib.loads(f"a = {value(math.inf)}\nb = {value(-math.inf)}")["b"] == -math.inf
    assert math.isnan(tomllib.loads(f"c = {value(math.nan)}")["c"])


def test_a_value_toml_cannot_hold_is_refused():
    with pytest.raises(TypeError):
        value(object())


def test_show_keys_is_a_config_with_every_default():
    text = describe()
    values = [line.split(" # ")[0] for line in text.splitlines() if " = " in line]
    assert values and not [v for v in values if "'" in v or v.rstrip().endswith(("True", "False"))]
    assert set(tomllib.loads(text)) == set(SECTIONS)
    assert parse_config(text) == parse_config("")  # every default, as the config file would give it
