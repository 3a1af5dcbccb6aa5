"""The MQTT network thread's wait: select() on the broker's socket and on a wake-up socket, for as long as nothing
is due, with the keepalive bookkeeping that makes that possible; and the import of the client library.

The client library pings when a keepalive is due by its own clock readings of the last packet in and out. The loop
reads the clock just after each call that reads or writes, so its readings are never earlier than the library's
and the ping is due when it wakes; it also looks in every quarter keepalive, so a write it did not see costs at
most that much delay. An idle connection wakes the thread a few times per keepalive interval, not 20 times a second.
"""

from __future__ import annotations

import importlib
import select
import socket
import sys
import time
import types

KEEPALIVE_RECHECK_S = 0.005  # the shortest sleep when a keepalive is due by our readings but not yet by the library's
KEEPALIVE_LOOKS = 4  # looks per keepalive interval at the least


class NetworkLoop:
    """`serve_once()` from the network thread; `wake()` from any thread when there is something to send."""

    def __init__(self, client, keepalive_s: float, ok_code):
        self.client = client
        self.keepalive_s = keepalive_s
        self._ok = ok_code
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._last_in = self._last_out = 0.0  # monotonic, just after the last read / write / keepalive check
        self.wakeups = 0  # times the thread woke up: a figure for tests and diagnosis

    def connected(self) -> None:
        """A new connection: its CONNECT went out and nothing came in yet."""
        self._last_in = self._last_out = time.monotonic()

    def wrote(self) -> None:
        """This thread published: the client library writes at once when called from the thread that loops."""
        self._last_out = time.monotonic()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the thread is due to wake anyway) or closed at shutdown
            pass

    def serve_once(self, wake_at: float = 0.0) -> bool:
        """Sleep until the broker sent something, another thread called wake(), a keepalive is due or the monotonic
        time `wake_at` (0: none) has come; handle what came. False once the connection is gone."""
        client, ok = self.client, self._ok
        sock = client.socket()
        if sock is None:
            return False
        now = time.monotonic()
        due = min(self._last_in, self._last_out) + self.keepalive_s
        pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: bytes already decrypted
        timeout = 0.0 if pending else min(max(due - now, KEEPALIVE_RECHECK_S), self.keepalive_s / KEEPALIVE_LOOKS)
        if wake_at:
            timeout = min(timeout, max(wake_at - now, 0.0))
        try:
            readable, writable, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [], [],
                                                  timeout)
        except (OSError, ValueError, TypeError):  # the socket was closed under us: reconnect
            return False
        self.wakeups += 1
        if self._wake_r in readable:
            self._drain()
        rc = ok
        if sock in readable or pending:
            rc = client.loop_read()
            self._last_in = time.monotonic()
        if rc == ok and (writable or client.want_write()):
            rc = client.loop_write()
            self._last_out = time.monotonic()
        if rc == ok:
            due_now = time.monotonic() >= due
            rc = client.loop_misc()  # sends the ping when it is due
            if due_now:
                self._last_in = self._last_out = time.monotonic()
        return rc == ok and client.socket() is not None

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        for end in (self._wake_r, self._wake_w):
            end.close()


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute is read, then imports the real one and answers from it.

    `unraisable`: exception classes the client library names in `except` clauses around every socket call (ssl's
    SSLWantReadError, SSLWantWriteError). While the real module is not loaded nothing can raise them (an SSL socket
    needs the ssl module), so until then they read as a class nothing raises and import nothing; once the real
    module is loaded (a TLS client, in this process or any other part of it) they read as the real classes."""

    def __init__(self, name: str, unraisable: tuple[str, ...] = ()):
        super().__init__(name)
        self._unraisable = unraisable

    def __getattr__(self, name: str):
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            if name in self._unraisable:
                return _NeverRaised
            if real is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


class _NeverRaised(Exception):
    """What an `except module.Error` clause catches while that module is not loaded: nothing."""


# modules paho.mqtt.client imports at the top for features a connection may not use (see import_paho)
_STAND_INS = {"urllib.request": (), "hashlib": (), "ssl": ("SSLWantReadError", "SSLWantWriteError")}


def import_paho(tls: bool = True):
    """paho.mqtt.client, without the modules it imports at the top for features this connection does not use:
    urllib.request (with http.client, email and 30 more modules, ~2 MB) for proxy settings read only when PySocks
    is installed; hashlib for the websocket handshake; and, with tls False, ssl. hashlib and ssl map OpenSSL's
    libcrypto and libssl, ~5 MB resident, which a daemon with TLS off never uses. Each gets a stand-in
    (_OnFirstUse) that imports the real module the first time it is used; a module already imported is used as
    it is, and later imports elsewhere get the real ones."""
    if "paho.mqtt.client" in sys.modules:
        import paho.mqtt.client as paho
        return paho
    if tls:
        import ssl  # noqa: F401  (the real one, before the client library looks for it)
    stand_ins = {name: _OnFirstUse(name, unraisable) for name, unraisable in _STAND_INS.items()
                 if name not in sys.modules}
    sys.modules.update(stand_ins)
    if "urllib.request" in stand_ins:
        import urllib
        urllib.request = stand_ins["urllib.request"]  # the attribute paho reads (an import of the real one replaces it)
    try:
        import paho.mqtt.client as paho
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
    return paho
