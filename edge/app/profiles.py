"""`edge-audio profiles`: the board profiles shipped with the kit (complete daemon configs), listed or printed."""

from __future__ import annotations

from .command import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "profiles", "list the board profiles shipped with the kit, or print one",
                    "Board profiles are complete daemon configs for each supported board. Print one to start your "
                    "own config from it.",
                    ["edge-audio profiles pi4-usb-coral > config.toml"])
    p.add_argument("name", nargs="?", help="a profile to print (default: list them)")
    p.set_defaults(func=cmd_profiles)


def cmd_profiles(args) -> int:
    from .. import firmware
    print(firmware.profile_text(args.name) if args.name else "\n".join(firmware.profile_names()), end="\n")
    return 0
