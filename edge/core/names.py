"""What a name must be to go where the daemon puts it: into an MQTT topic (a device id, a topic prefix), into an
MQTT CONNECT packet (client id, user name: UTF-8 strings with a 16-bit length), or into a DNS lookup (the broker's
host). Each check returns why a value cannot be used, as the end of a sentence, or "" when it can."""

from __future__ import annotations

import ipaddress
import re

MAX_ID_CHARS = 128  # device.id, mqtt.client_id: far below MQTT's 65535 bytes, with room for the rest of a topic
MAX_PREFIX_CHARS = 256  # mqtt.prefix, mqtt.discovery_prefix
MAX_USERNAME_CHARS = 1024
MAX_LABEL_CHARS = 256  # a class name in [detector]
MAX_HOST_CHARS, MAX_HOST_LABEL_CHARS = 253, 63  # DNS: a name, and each dot-separated label of it

# What an MQTT UTF-8 string must not (NUL) or should not hold (control characters, noncharacters): a broker may
# drop the connection over one. Tabs and line breaks in a name also break logs and Home Assistant's entity ids.
_NONCHARACTERS = "".join(f"{chr(plane + 0xFFFE)}-{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000))
UNUSABLE = re.compile(f"[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef{_NONCHARACTERS}]")
NAMED = {"\0": "a NUL character", "\t": "a tab", "\n": "a line break", "\r": "a carriage return",
         "\x1b": "an escape character"}
HOST_LABEL = re.compile(r"[A-Za-z0-9_-]+")


def _character(c: str) -> str:
    return NAMED.get(c) or f"the {'non' if ord(c) >= 0xFDD0 else 'control '}character U+{ord(c):04X}"


def text_problem(value: str, max_chars: int) -> str:
    """Too long, or holding a character an MQTT string should not hold."""
    if len(value) > max_chars:
        return f"is {len(value)} characters long (at most {max_chars})"
    bad = UNUSABLE.search(value)
    return f"contains {_character(bad.group())}" if bad else ""


def topic_problem(value: str, max_chars: int, level: bool = False, first: bool = False) -> str:
    """A topic name's part: one level (`level`: no '/'), or several ('/' between non-empty levels); `first`: it
    begins the topic, so it must not begin with '$' (the broker's own topics, such as $SYS)."""
    why = text_problem(value, max_chars)
    if why:
        return why
    wild = [repr(c) for c in ("#", "+") if c in value]
    if wild:
        return f"contains {' and '.join(wild)}: MQTT topic wildcards cannot be part of a topic name"
    if level and "/" in value:
        return "contains '/': MQTT topic separators cannot be part of a topic name level"
    if not level and (value.startswith("/") or value.endswith("/") or "//" in value):
        return "has an empty topic level (a leading, trailing or double '/')"
    if first and value.startswith("$"):
        return "starts with '$': topics beginning with '$' are the broker's own (such as $SYS), not for clients"
    return ""


def host_problem(host: str) -> str:
    """Not a host name (dot-separated labels of letters, digits, '-' and '_', at most 63 characters each and 253
    in all, an optional final '.') and not an IP address."""
    if not host:
        return "is empty"
    if host.startswith("[") or host.endswith("]"):
        return "has brackets: write an IPv6 address without them (the port is mqtt.port)"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "has a ':' but is not an IPv6 address (the port is mqtt.port)"
        return ""
    name = host.removesuffix(".")
    if len(name) > MAX_HOST_CHARS:
        return f"is {len(name)} characters long (DNS names are at most {MAX_HOST_CHARS})"
    for label in name.split("."):
        if not label:
            return "has an empty label (a leading or double '.')"
        if len(label) > MAX_HOST_LABEL_CHARS:
            return f"has a label of {len(label)} characters (DNS labels are at most {MAX_HOST_LABEL_CHARS})"
        if not HOST_LABEL.fullmatch(label):
            return "may only hold letters, digits, '-', '_' and '.'"
    return ""


def shown(value: str, chars: int = 40) -> str:
    """A value as an error line quotes it: repr (control characters escaped), cut short when long."""
    return repr(value) if len(value) <= chars else repr(value[:chars]) + "..."


# -- stream URLs (a camera's audio: anything ffmpeg reads over the network) ----------------------------------------
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp")
MAX_URL_CHARS = 2048
SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:user(?:name)?|pass(?:word)?|pwd|token|key|auth|secret|sig(?:nature)?)"
                          r"=)[^&;#]*")


def url_problem(url: str) -> str:
    """Why `url` is no stream URL ffmpeg can open over the network ("" when it is one): scheme://host[:port]/..."""
    from urllib.parse import urlsplit
    if not url:
        return "is empty"
    why = text_problem(url, MAX_URL_CHARS)
    if why:
        return why
    if any(c.isspace() for c in url):
        return "contains a space (percent-encode it as %20)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in STREAM_SCHEMES:
        return f"does not start with a stream scheme ({', '.join(s + '://' for s in STREAM_SCHEMES)})"
    if not parts.hostname:
        return "names no host (scheme://host[:port]/path)"
    if port == 0:
        return "has port 0"
    return ""


def redacted(text: str, url: str = "") -> str:
    """`text` with the credentials of `url` (its user:password@ and secret query values) blanked out wherever they
    appear; with no `url`, `text` is itself a URL. What is logged, published or shown never holds a password."""
    from urllib.parse import quote, unquote, urlsplit
    url = url or text
    try:
        parts = urlsplit(url)
    except ValueError:
        return text if not url else text.replace(url, "<stream URL>")
    secrets = []
    if "@" in parts.netloc:
        secrets.append(parts.netloc.rsplit("@", 1)[0])
    for m in SECRET_QUERY.finditer(parts.query):
        secrets.append(m.group(0)[len(m.group(1)):])
    for secret in sorted(set(filter(None, secrets)), key=len, reverse=True):
        text = text.replace(secret, "***")
        for variant in {unquote(secret), quote(unquote(secret), safe="")} - {secret}:
            text = text.replace(variant, "***")
    return text
