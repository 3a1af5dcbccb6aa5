"""Clips over MQTT (mqtt.clips): a kept clip goes through the ordered outbox as a small reference, and its audio is
read only when it is the head being sent.

The audio loop appends, right after the end event that carries the clip, a reference on
<prefix>/<device id>/clips/<event id> (QoS 1, not retained):

    {"bytes": N, "clip": "<absolute path of the audio file>", "sha256": "<of its bytes>"}

so the spool keeps a few hundred bytes per clip, never the audio, and nothing is read from disk on the audio loop.
When the network thread publishes that head, the file's bytes are read then and published as the payload: one
message is in flight at a time (delivery.py) and the client library holds its payload only while it is in flight,
so memory holds one clip at most. A clip that cannot be sent as it was kept (deleted by the retention before it
could go, larger than mqtt.clip_max_kb, its bytes no longer those of its sha256, unreadable) raises Unsendable: the
reference is set aside (the spool's dead-letter table), said once, counted as clips_unsent, and delivery goes on.
"""

from __future__ import annotations

import json
import os
import re

from ..core.files import sha256_hex, size_text
from .outbox import Message
from .spool_records import CLIP_KIND, clip_reference

_LEVEL = re.compile(r"^[^/+#\0]+$")  # an event id as one topic level


class Unsendable(Exception):
    """The clip of a reference cannot be sent, ever: the message says which and why, in one line."""


def reference(topic: str, record: dict, path: str) -> Message | None:
    """The outbox message for a kept clip (no file is read: the record has its size and sha256); None for a record
    that cannot make one (no event id that is a topic level, no size or sha256)."""
    payload = json.dumps({"clip": os.path.abspath(path), "bytes": record.get("bytes"),
                          "sha256": record.get("sha256")}, sort_keys=True)
    if clip_reference(payload) is None:
        return None
    return Message(topic, payload, qos=1, retain=False, kind=CLIP_KIND)


def valid_event_id(event_id) -> bool:
    return isinstance(event_id, str) and bool(_LEVEL.match(event_id))


def event_id_of(msg: Message) -> str:
    return msg.topic.rsplit("/", 1)[-1]


def read_clip(msg: Message, max_kb: int) -> bytes:
    """The audio a clip reference names, exactly as it was kept; Unsendable when it cannot be sent."""
    ref = clip_reference(msg.payload)
    what = f"clip {event_id_of(msg)}"
    if ref is None:
        raise Unsendable(f"{what}: its reference is not readable")
    path = ref["clip"]
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_kb * 1024:
                raise Unsendable(f"{what}: {name} is {size_text(size)}, over mqtt.clip_max_kb {max_kb}: kept on the "
                                 "device only")
            data = f.read(size + 1)  # one more: a file that grew meanwhile is not the one kept
    except FileNotFoundError:
        raise Unsendable(f"{what}: deleted before it could be sent") from None
    except OSError as exc:
        raise Unsendable(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    if len(data) != ref["bytes"] or sha256_hex(data) != ref["sha256"]:
        raise Unsendable(f"{what}: {name} is no longer the file that was kept (its size or sha256 differs): "
                         "not sent")
    return data
