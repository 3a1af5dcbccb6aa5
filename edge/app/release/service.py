"""The service side of a release: render the systemd unit for a prefix, install it with the udev rules, restart,
stop and start it.

Two modes: `system` (root: /etc/systemd/system, the `edge-audio` account from systemd-sysusers, udev rules
installed) and `user` (any account: ~/.config/systemd/user and `systemctl --user`; udev rules need root once).
Where systemd is not the init system (containers, chroots, build machines) nothing is restarted and the caller is
told so.
Standard library only, like the rest of the release steps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ... import firmware
from ...core.errors import InputError
from ...core.files import replace_file
from .store import Layout

MODES = ("auto", "system", "user", "none")  # how the service is run: --service
UNIT = "edge-audio.service"
UDEV_RULES = "99-edgetpu-accelerator.rules"
SYSUSERS = "edge-audio.conf"  # the account and groups of the system unit
SYSTEM_TEMPLATE_PREFIX = "/opt/edge-audio"  # the shipped units are written for these prefixes
USER_TEMPLATE_PREFIX = "%h/edge-audio"
SERVICE_ACCOUNT = "edge-audio"
SAFE_PREFIX = re.compile(r"[A-Za-z0-9._/+@-]+")


class ServiceError(InputError):
    """The service could not be installed, restarted or did not come up."""


@dataclass(frozen=True)
class Service:
    mode: str  # system | user | none
    layout: Layout

    @classmethod
    def choose(cls, mode: str, layout: Layout) -> "Service":
        if mode not in MODES:
            raise InputError(f"--service {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "auto":
            mode = "system" if os.geteuid() == 0 else "user"
        if mode != "none" and not SAFE_PREFIX.fullmatch(str(layout.prefix)):
            raise InputError(f"prefix {layout.prefix}: a systemd unit cannot name it safely; use letters, digits "
                             "and . _ / + @ - only (or --service none)")
        return cls(mode, layout)

    # -- files ----------------------------------------------------------------------------------------------------
    def unit_text(self) -> str:
        name = "edge-audio-user.service" if self.mode == "user" else UNIT
        text = firmware.read_text(f"systemd/{name}")
        token = USER_TEMPLATE_PREFIX if self.mode == "user" else SYSTEM_TEMPLATE_PREFIX
        text = text.replace(token, str(self.layout.prefix))
        if not (self.layout.secrets / "mqtt_password").is_file():  # systemd refuses to start on a missing file
            text = "\n".join(l for l in text.splitlines() if not l.startswith("LoadCredential=")) + "\n"
        return text

    def render(self, release: Path) -> None:
        """Write the unit and udev rules this release would install into the release itself."""
        if self.mode == "none":
            return
        (release / UNIT).write_text(self.unit_text())
        for folder, name in (("udev", UDEV_RULES), ("sysusers", SYSUSERS)):
            (release / folder).mkdir(exist_ok=True)
            (release / folder / name).write_text(firmware.read_text(f"{folder}/{name}"))

    # -- the service manager ----------------------------------------------------------------------------------------
    def why_not_running(self) -> str:
        """Why this device's systemd cannot take the unit now ("" when it can)."""
        if self.mode == "none":
            return "the service step is off (--service none)"
        if not shutil.which("systemctl"):
            return "this device has no systemctl"
        if not Path("/run/systemd/system").is_dir():
            return "systemd is not the init system here (no /run/systemd/system: a container or chroot?)"
        if self.mode == "user":
            runtime = os.environ.get("XDG_RUNTIME_DIR", "")
            if not runtime or not Path(runtime, "systemd").is_dir():
                return "no systemd user manager for this account (log in once, or: loginctl enable-linger)"
        return ""

    def _systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["systemctl", *(["--user"] if self.mode == "user" else []), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
            raise ServiceError(f"{' '.join(cmd)}: {detail}")
        return proc

    def unit_dir(self) -> Path:
        if self.mode == "user":
            return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"
        return Path("/etc/systemd/system")

    def install(self, release: Path, say) -> None:
        """Install the release's unit (and, as root, its udev rules) and enable the service."""
        unit_dir = self.unit_dir()
        unit_dir.mkdir(parents=True, exist_ok=True)
        _replace(unit_dir / UNIT, (release / UNIT).read_text())
        if self.mode == "system":
            self._service_account(release)
            rules = Path("/etc/udev/rules.d") / UDEV_RULES
            if _replace(rules, (release / "udev" / UDEV_RULES).read_text()) and shutil.which("udevadm"):
                subprocess.run(["udevadm", "control", "--reload"], capture_output=True)
                subprocess.run(["udevadm", "trigger", "--subsystem-match=usb", "--action=add"], capture_output=True)
                say(f"udev rules installed: {rules}")
        else:
            say(f"udev rules need root once: sudo install -m 0644 {release / 'udev' / UDEV_RULES} "
                f"/etc/udev/rules.d/ && sudo udevadm control --reload")
        self._systemctl("daemon-reload")
        self._systemctl("enable", UNIT)

    def restart(self) -> None:
        """Restart and return once the unit is active: Type=notify makes this wait for READY=1."""
        self._systemctl("restart", UNIT)
        self._check_active("restart")

    def is_active(self) -> bool:
        """Is the unit running (or on its way up, or between automatic restarts)?"""
        state = self._systemctl("is-active", UNIT, check=False).stdout.strip()
        return state in ("active", "activating", "reloading")

    def stop(self) -> None:
        """Stop the unit (it releases the microphone); returns once it has exited."""
        self._systemctl("stop", UNIT)

    def start(self) -> None:
        """Start the unit and return once it is active (READY=1)."""
        self._systemctl("start", UNIT)
        self._check_active("start")

    def _check_active(self, after: str) -> None:
        state = self._systemctl("is-active", UNIT, check=False).stdout.strip()
        if state != "active":
            raise ServiceError(f"{UNIT} is {state or 'not active'} after the {after}; see journalctl "
                               f"{'--user ' if self.mode == 'user' else ''}-u {UNIT}")

    def _service_account(self, release: Path) -> None:
        """The account and groups the unit names (systemd-sysusers), and the state folder it may write."""
        conf = Path("/etc/sysusers.d") / SYSUSERS
        _replace(conf, (release / "sysusers" / SYSUSERS).read_text())
        proc = subprocess.run(["systemd-sysusers", str(conf)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"systemd-sysusers {conf}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
        shutil.chown(self.layout.state, SERVICE_ACCOUNT, SERVICE_ACCOUNT)
        secret = self.layout.secrets / "mqtt_password"
        if secret.exists():
            os.chmod(secret, 0o600)  # read by systemd (root) for LoadCredential=, not by the account


def _replace(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically if it differs; True when it changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text)
    return True
