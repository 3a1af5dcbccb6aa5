"""Event delivery: the outbox's head in flight, one at a time, and set aside after a few failed tries so that the
events behind it are delivered; and the problem the sink reports in its metrics (mqtt_error).

Events go out in order, one in flight at a time: a message the broker can never accept would otherwise hold up
every later one for good. An event fails a try when the broker refuses it (an MQTT 5 PUBACK with a failure reason
code: an ACL denial, a topic name it rejects) or drops the connection while it is in flight (a packet it cannot
parse, such as a topic with a control character). A drop that says nothing about the message (a keepalive timeout,
the broker shutting down or taking the session over) is not counted. After TRIES failed tries in a row the event
goes from the outbox to the spool's dead-letter table (Outbox.set_aside), with one log line, and delivery goes on.
A refused event is sent again after a short pause; one that made the broker drop the connection, on the next
connection (after the back-off). One the client library cannot encode at all is set aside at once, and so is a
clip's reference whose file cannot be sent as it was kept (clipsend.py: gone, too large, changed): counted as
clips_unsent, as a delivered one is as clips_sent.
"""

from __future__ import annotations

import json
import logging
import time

from .clipsend import Unsendable
from .outbox import Message, Outbox
from .spool_records import CLIP_KIND

log = logging.getLogger("edge.mqtt")

TRIES = 3  # failed tries in a row before an event is set aside
REFUSED_PAUSE_S = 0.5  # a refused event is sent again after this many seconds times the tries so far
EVENTS = "events"  # the scope of a problem with the event stream

# reasons for a dropped connection that are not the message's doing
NOT_THE_MESSAGE = frozenset({"Success", "Normal disconnection", "Keep alive timeout", "Server shutting down",
                             "Session taken over", "Server busy", "Administrative action", "Use another server",
                             "Server moved", "Maximum connect time", "Connection rate exceeded"})


class Problems:
    """The sink's current problem (mqtt_error): logged once per new problem, not once per retry, and no longer
    current once what it was about works again (`scope`: the connection, the events, a retained topic)."""

    def __init__(self):
        self.current = ""
        self._scope = ""
        self._logged = ""

    def note(self, message: str, scope: str, logged: bool = False) -> None:
        """`logged`: the caller has logged it already."""
        if not logged and message != self._logged:
            log.error("MQTT: %s", message)
            self._logged = message
        self.current, self._scope = message, scope

    def clear(self, scope: str) -> None:
        if self.current and self._scope == scope:
            self.current = self._scope = self._logged = ""


class HeadDelivery:
    """send() from the network thread's pass; acknowledged() / dropped() / connected() from the client's
    callbacks (the same thread)."""

    def __init__(self, outbox: Outbox, problems: Problems, limit: int = TRIES):
        self.outbox = outbox
        self.problems = problems
        self.limit = limit
        self.inflight: tuple[int, Message] | None = None
        self.hold_until = 0.0  # a refused event is sent again from this monotonic time (0: now)
        self.tries = 0  # failed tries of `_trying` in a row
        self._trying: Message | None = None
        self.delivered = self.refused = self.set_aside = 0
        self.clips_sent = self.clips_unsent = 0  # of those delivered and set aside, clips (mqtt.clips)

    def send(self, publish, ok) -> int:
        """Hand the head to `publish(msg)` unless one is in flight or a refused one waits; how many went out."""
        if self.inflight is not None:
            return 0
        if self.hold_until:
            if time.monotonic() < self.hold_until:
                return 0
            self.hold_until = 0.0
        while (head := self.outbox.head()) is not None:
            try:
                info = publish(head)
            except (ValueError, UnicodeError) as exc:  # the client library cannot encode it: no try would work
                self._set_aside(head, f"the client library cannot send it ({exc})", 1)
                continue
            except Unsendable as exc:  # a clip gone or changed since it was kept, or too large: said as it is
                self._set_aside(head, str(exc), 0)
                continue
            if info.rc == ok:  # else the queue is full or the connection gone: sent again at the next pass
                self.inflight = (info.mid, head)
            return 1
        return 0

    def connected(self) -> None:
        self.inflight = None  # the client library's copy was dropped: the head is sent again

    def acknowledged(self, mid: int, refusal: str) -> bool:
        """The broker answered `mid`: True when it was the event in flight. `refusal`: its failure reason code."""
        if self.inflight is None or self.inflight[0] != mid:
            return False
        msg = self.inflight[1]
        self.inflight = None  # the network thread sends the next one as soon as this callback returns
        if not refusal:
            self.delivered += 1
            self.clips_sent += msg.kind == CLIP_KIND
            self._trying, self.tries = None, 0
            self.outbox.remove_head(msg)
            self.problems.clear(EVENTS)
            return True
        self.problems.note(f"broker refused to accept {msg.topic}: {refusal} (check the ACL for this user)", EVENTS)
        if self._failed(msg):
            self._set_aside(msg, f"the broker refused it ({refusal})", self.tries, refused=True)
        else:
            self.hold_until = time.monotonic() + REFUSED_PAUSE_S * self.tries
        return True

    def dropped(self, reason, stopping: bool) -> None:
        """The connection is gone (`reason`: the client library's reason code)."""
        inflight, self.inflight = self.inflight, None
        if inflight is None or stopping or str(reason) in NOT_THE_MESSAGE:
            return
        if self._failed(inflight[1]):
            why = f"the broker dropped the connection each time it was in flight ({reason})"
            self._set_aside(inflight[1], why, self.tries)

    def _failed(self, msg: Message) -> bool:
        if msg is not self._trying:
            self._trying, self.tries = msg, 0
        self.tries += 1
        return self.tries >= self.limit

    def _set_aside(self, msg: Message, why: str, tries: int, refused: bool = False) -> None:
        """Out of the queue for good, into the spool's dead-letter table; one line says which and why."""
        self._trying, self.tries = None, 0
        self.outbox.set_aside(msg, why)
        self.set_aside += 1
        self.refused += refused
        self.clips_unsent += msg.kind == CLIP_KIND
        where = "kept in the spool's dead-letter table" if self.outbox.path else "not kept: no spool"
        if tries:
            line = f"set aside {describe(msg)} after {tries} failed {'try' if tries == 1 else 'tries'}: {why}; " \
                   f"not sent again ({where}), delivery goes on with the next event"
        else:  # never tried: `why` names it
            line = f"{why} (its reference is {where}); delivery goes on with the next message"
        log.error("MQTT: %s", line)
        self.problems.note(line, EVENTS, logged=True)


def describe(msg: Message) -> str:
    """The event's key for the log: its id, type, label and topic (quoted, control characters shown)."""
    if msg.kind == CLIP_KIND:
        return f"clip {msg.topic.rsplit('/', 1)[-1]} (topic={msg.topic!r})"
    try:
        event = json.loads(msg.payload)
    except (TypeError, ValueError):
        event = None
    if not isinstance(event, dict):
        return f"an unreadable event on topic {msg.topic!r}"
    return f"event_id={event.get('event_id')} type={event.get('type')} label={event.get('label')!r} " \
           f"topic={msg.topic!r}"
