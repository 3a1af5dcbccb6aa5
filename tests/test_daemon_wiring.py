"""Daemon wiring with a fake Edge TPU classifier passed through the constructor (no TPU on these machines):
a failing TPU invoke switches to the real CPU model without losing the stream."""

import copy
import dataclasses

from edge.classifier import Classifier
from edge.config import parse_config
from edge.daemon import Daemon
from edge.sources import Capture, make_source


class UnpluggedTpu:
    """Looks like an Edge TPU classifier whose USB device went away after `good` windows."""

    def __init__(self, real: Classifier, good: int):
        self._real, self._good = real, good
        self.labels, self.params, self.frontend = real.labels, real.params, real.frontend
        self.model_name = real.model_name
        self.decision = dataclasses.replace(copy.copy(real.decision), delegate="edgetpu", reason="test TPU")

    def classify(self, window, start):
        if self._good <= 0:
            raise RuntimeError("Edge TPU: failed to invoke (USB transfer error)")
        self._good -= 1
        return self._real.classify(window, start)

    def describe(self):
        return "fake Edge TPU"

    def top(self, scores, k):
        return self._real.top(scores, k)


def test_tpu_failure_mid_stream_falls_back_to_cpu_and_keeps_the_events(assets, coral_twin, class_map, capsys):
    cfg = parse_config(f"""
[audio]
source = "wav"
file = "{assets / 'audio' / 'miaow_16k.wav'}"
realtime = false
[model]
path = "{coral_twin}"
[detector]
allow = ["Cat"]
[mqtt]
enabled = false
""")
    cpu = Classifier.open(coral_twin, class_map, "cpu")
    opened = []

    def reopen(delegate):
        opened.append(delegate)
        return cpu

    daemon = Daemon(cfg, UnpluggedTpu(cpu, good=3), Capture(make_source(cfg.audio), cfg.audio),
                    open_classifier=reopen)
    assert daemon.run() == 0
    assert opened == ["cpu"] and daemon.delegate_switches == 1
    m = daemon.metrics()
    assert m["delegate"] == "cpu" and "Edge TPU invoke failed" in m["delegate_reason"] and m["windows"] == 13
    events = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert '"type": "start"' in events[0] and '"type": "end"' in events[-1]
    assert '"delegate": "cpu"' in events[-1]  # stamped with the delegate actually in use
