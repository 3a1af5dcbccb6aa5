"""Can this user open the devices the daemon needs (the Edge TPU, the microphone)? One line per device file,
naming the group that is missing; and the groups the installed service unit gives its dynamic user."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import stat


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def access_hint(node: str, mode: int, owner: int, gid: int, uid: int, gids: set[int], user: str) -> str:
    """Why `user` (uid, gids) cannot read and write `node` (mode, owner, gid), and what fixes it."""
    group = group_name(gid)
    if uid != owner and gid not in gids and mode & 0o060 == 0o060:
        return (f"{user} cannot open {node}: it is read/write for group '{group}' and {user} is not in it "
                f"(sudo usermod -aG {group} {user}; the service unit lists it in SupplementaryGroups)")
    return (f"{user} cannot open {node} ({stat.filemode(mode)}, group '{group}'): "
            "check the udev rules (edge-audio installs them; PREFIX/current/udev/ in a release)")


def check_node(node: str) -> str:
    """'ok', or one line saying why this process's user cannot open `node`."""
    try:
        st = os.stat(node)
    except OSError as exc:
        return f"{node}: {exc.strerror}"
    if os.access(node, os.R_OK | os.W_OK):
        return "ok"
    uid = os.geteuid()
    return access_hint(node, st.st_mode, st.st_uid, st.st_gid, uid, set(os.getgroups()) | {os.getegid()},
                       user_name(uid))


def sound_nodes(dev: str) -> list[str]:
    """The ALSA capture device files (and the control files that go with them)."""
    return sorted(glob.glob(os.path.join(dev, "snd", "pcmC*D*c")) + glob.glob(os.path.join(dev, "snd", "controlC*")))


def unit_groups(unit_file: str) -> list[str] | None:
    """The SupplementaryGroups= of an installed systemd unit, or None when it is not installed."""
    try:
        text = open(unit_file).read()
    except OSError:
        return None
    groups: list[str] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "SupplementaryGroups":  # assignments add up; an empty one resets the list
            groups = groups + value.split() if value.strip() else []
    return groups


def node_group(node: str) -> str:
    """The group that owns a device file ('' when it cannot be read)."""
    try:
        return group_name(os.stat(node).st_gid)
    except OSError:
        return ""
