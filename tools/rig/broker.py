"""Mosquitto on 127.0.0.1 and a free port, its config and log in its own folder: anonymous, or with passwords and
an ACL; plain or TLS (make_certs gives a CA and a server certificate); with persistence if asked. It can be
killed and started again on the same port, frozen (SIGSTOP) and resumed, and told to save its sessions now."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from .ports import RigError, free_port, have, stop_process, wait_for_port, wait_until


def make_certs(folder: Path, name: str = "ca") -> dict:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / f"{name}.key", folder / f"{name}.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=edge-audio test {name}",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(crt))
    return {"ca": ca_crt, "cert": crt, "key": key}


class Broker:
    """Started on construction; stop() when done (also after kill())."""

    def __init__(self, folder: Path, users: dict | None = None, acl: str | None = None, tls: dict | None = None,
                 persistence: bool = False):
        if not have("mosquitto"):
            raise RigError("mosquitto is not installed (sudo apt-get install mosquitto; make test installs it)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        keep = ["persistence true", f"persistence_location {folder}/", "autosave_interval 1"] if persistence \
            else ["persistence false"]
        user = ["user root"] if os.geteuid() == 0 else []
        lines = [f"listener {self.port} 127.0.0.1", *user, *keep,
                 f"allow_anonymous {'false' if users else 'true'}", "log_dest stderr", "log_type error"]
        if users:
            pw = folder / "passwd"
            pw.write_text("")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if acl:
            (folder / "acl").write_text(acl)
            lines.append(f"acl_file {folder / 'acl'}")
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.start()

    def start(self) -> None:
        """Start (again, after kill()) on the same port."""
        self._log = open(self.folder / "broker.log", "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=self._log)
        try:
            wait_for_port(self.port)
            if wait_until(lambda: self.proc.poll() is not None, 0.2):  # the port answered, but not for it
                raise RigError(f"mosquitto exited ({self.proc.returncode}) at start: another listener on port "
                               f"{self.port}? its log: {self.folder / 'broker.log'}")
        except RigError:
            self.stop()
            raise

    def kill(self) -> None:
        """A crash: SIGKILL, no goodbye to anyone, nothing saved since the last autosave."""
        self.proc.kill()
        self.proc.wait()
        self._close_log()

    def save(self, timeout_s: float = 5.0) -> None:
        """Have a persistent broker write its sessions to disk now (SIGUSR1), as it does every autosave interval:
        a crash after this keeps the subscribers' sessions."""
        db = self.folder / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        if not wait_until(lambda: db.exists() and db.stat().st_mtime_ns != before, timeout_s):
            raise RigError("the broker did not save its database")

    def pause(self) -> None:
        """Frozen: the connections stay open, nothing is answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            stop_process(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
