"""What a recorder is told to do: the broker, its subscription, its store, its clips folder and its web server, in
one value the command builds (command line over the config file's [recorder] table over the defaults) and hands
to the ingest and the web app. Each default is written here once (the broker's are the daemon's own MQTT
defaults)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ...config import MqttConfig
from ...core.files import MIB

MQTT = MqttConfig()


def default_client_id() -> str:
    return f"edge-audio-recorder-{socket.gethostname()}"


@dataclass(frozen=True)
class Options:
    # the broker (MQTT 5 always: shared subscriptions and session expiry are MQTT 5's)
    host: str = MQTT.host
    port: int = MQTT.port
    username: str = ""
    password: str | None = None  # read from --password-file; never logged
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # the subscription
    prefix: str = MQTT.prefix
    group: str = "edge-audio-recorder"  # $share/<group>/...: recorders in one group split the messages
    client_id: str = ""  # "" -> edge-audio-recorder-<hostname>
    session_expiry_s: int = 86400  # how long the broker keeps this recorder's messages while it is away
    # the store and the clips
    db: str = ""  # sqlite:///PATH or postgresql://...
    clips_dir: str = ""
    clip_max_bytes: int = 8 * MIB
    clip_wait_s: float = 30.0  # how long a clip whose event is not stored yet is held before it is kept alone
    retention_days: float = 0.0  # 0: keep everything
    clips_max_mb: float = 0.0  # 0: no limit
    # the web server
    http: str = "127.0.0.1:8480"  # "" for none
    token: str | None = None

    @property
    def the_client_id(self) -> str:
        return self.client_id or default_client_id()

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0].strip("[]") if self.http else ""

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2]) if self.http else 0
