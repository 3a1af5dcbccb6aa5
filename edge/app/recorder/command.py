"""`edge-audio recorder`: store every device's events, clips, status and metrics from a broker (edge/app/recorder/
ingest.py) in SQLite or PostgreSQL (store.py), and serve the fleet view (web.py) on one address.

Its settings come from the command line, then the config file's [recorder] table (the same keys, with '_' or '-':
host = "broker.lan", db = "postgresql://...", http = "0.0.0.0:8480", token_file = "/etc/edge-audio/token", ...),
then the defaults. SIGTERM or SIGINT stops it cleanly: the ingest first (whatever it held unacknowledged the broker
sends again), then the web server, then the store."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from ...core.errors import ConfigError, InputError
from ..command import add_command, say
from ...core.files import MIB
from .options import Options

log = logging.getLogger("edge.recorder")
RETENTION_EVERY_S = 3600.0
SETTINGS = {  # [recorder] key -> (argparse dest, type)
    "host": ("host", str), "port": ("port", int), "username": ("username", str),
    "password_file": ("password_file", str), "tls": ("tls", bool), "ca_file": ("ca_file", str),
    "cert_file": ("cert_file", str), "key_file": ("key_file", str), "prefix": ("prefix", str),
    "group": ("group", str), "client_id": ("client_id", str), "session_expiry_seconds": ("session_expiry", int),
    "db": ("db", str), "clips": ("clips", str), "clip_max_mb": ("clip_max_mb", float), "http": ("http", str),
    "token_file": ("token_file", str), "retention_days": ("retention_days", float),
    "clips_max_mb": ("clips_max_mb", float),
}
# settings that are Options fields by another name, or by the same (argparse dest -> field)
SAME_NAME = {"host": "host", "port": "port", "username": "username", "ca_file": "ca_file", "cert_file": "cert_file",
             "key_file": "key_file", "prefix": "prefix", "group": "group", "client_id": "client_id",
             "session_expiry": "session_expiry_s", "retention_days": "retention_days", "clips_max_mb": "clips_max_mb"}
DEFAULT = Options()


def add_parser(sub) -> None:
    p = add_command(sub, "recorder", "store every device's events, clips and health; serve the fleet view",
                    "Subscribe to a broker with an MQTT 5 shared subscription and a persistent session (several "
                    "recorders of one --group split the messages; one that stops gets its share when it is back), "
                    "store events, clips, status and metrics in SQLite or PostgreSQL, and serve a read-only fleet "
                    "view on --http.",
                    ["edge-audio recorder --host broker.lan",
                     "edge-audio recorder --db postgresql://rec@db.lan/edge --http 0.0.0.0:8480 --token-file tok",
                     "edge-audio recorder --export csv --out events.csv"],
                    after="exit status: 0 stopped by SIGTERM/SIGINT (or exported), 2 bad input (an unreachable "
                          "database, a bad flag), 78 a bad config file")
    p.add_argument("--config", metavar="FILE", help="a TOML file whose [recorder] table has the same keys")
    p.add_argument("--host", help=f"broker host (default: {DEFAULT.host})")
    p.add_argument("--port", type=int, help=f"broker port (default: {DEFAULT.port})")
    p.add_argument("--username")
    p.add_argument("--password-file", metavar="FILE", help="file holding the password (never on the command line)")
    p.add_argument("--tls", action="store_true", default=None, help="connect with TLS")
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate to trust")
    p.add_argument("--cert-file", metavar="FILE", help="client certificate (with --key-file)")
    p.add_argument("--key-file", metavar="FILE", help="the client certificate's private key")
    p.add_argument("--prefix", help=f"topic prefix (default: {DEFAULT.prefix})")
    p.add_argument("--group", help=f"shared subscription group (default: {DEFAULT.group})")
    p.add_argument("--client-id", help="MQTT client id, the session's name (default: edge-audio-recorder-HOSTNAME)")
    p.add_argument("--session-expiry", type=int, metavar="S", help="seconds the broker keeps this recorder's "
                   f"messages while it is away (default: {DEFAULT.session_expiry_s})")
    p.add_argument("--db", metavar="URL", help="sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB (default: "
                   "recorder.db in the state directory)")
    p.add_argument("--clips", metavar="DIR", help="where clips are written (default: recorder-clips in the state "
                   "directory)")
    p.add_argument("--clip-max-mb", type=float, metavar="MB",
                   help=f"one clip larger than this is refused (default: {DEFAULT.clip_max_bytes // MIB}; all "
                        "clips together: --clips-max-mb)")
    p.add_argument("--http", metavar="ADDR:PORT", help=f"where the fleet view listens (default: {DEFAULT.http}; "
                   "'none' for no web server)")
    p.add_argument("--token-file", metavar="FILE", help="file holding the web token (required when --http is not "
                   "a loopback address)")
    p.add_argument("--retention-days", type=float, metavar="D", help="delete events and clips older than this "
                   "(default: keep them)")
    p.add_argument("--clips-max-mb", type=float, metavar="MB", help="keep all clips together under this size, "
                   "oldest deleted first (default: no limit; one clip's limit: --clip-max-mb)")
    p.add_argument("--export", choices=("csv", "jsonl"), help="write the stored events and exit")
    p.add_argument("--out", metavar="FILE", help="with --export: the file (default: standard output)")
    p.set_defaults(func=cmd_recorder)


def settings(args) -> dict:
    """dest -> value: the command line's, else the config file's [recorder] table's (None when neither)."""
    table = config_table(args.config) if args.config else {}
    values = {}
    for key, (dest, kind) in SETTINGS.items():
        given = getattr(args, dest, None)
        values[dest] = given if given is not None else table.get(key)
    return values


def config_table(path: str) -> dict:
    from ...config import read_toml
    from ...core.files import read_text
    data = read_toml(read_text(path, "config file", ConfigError), path)  # ConfigError: one line, exit 78
    table = data.get("recorder", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [recorder] is not a table")
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in SETTINGS:
            raise ConfigError(f"{path}: recorder.{key}: not a recorder setting (one of {', '.join(SETTINGS)})")
        kind = SETTINGS[name][1]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: recorder.{key} = {value!r:.40}: not {kind.__name__}")
        out[name] = value
    return out


def build_options(args) -> Options:
    """The Options the settings give: each one given on the command line or in the file, the rest Options'
    defaults (the database and the clips folder in the state directory)."""
    from ...core.files import read_text
    from ...core.paths import state_directory
    from ...sinks.connection import is_loopback

    v = {k: x for k, x in settings(args).items() if x is not None}
    state = state_directory()
    given = {field: v[dest] for dest, field in SAME_NAME.items() if dest in v}
    http = v.get("http", DEFAULT.http)
    http = "" if http.lower() == "none" else http
    host, _, port = http.rpartition(":")
    if http and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        raise InputError(f"--http {http}: not ADDR:PORT (or none)")
    token = None
    if v.get("token_file"):
        token = read_text(v["token_file"], "token file", InputError).strip()
        if not token:
            raise InputError(f"--token-file {v['token_file']}: empty")
    if http and not is_loopback(host.strip("[]")) and token is None:
        raise InputError(f"--http {http} listens beyond this machine: give --token-file")
    if "password_file" in v:
        given["password"] = read_text(v["password_file"], "password file", InputError).strip()
    if not 0 < given.get("port", DEFAULT.port) < 65536:
        raise InputError(f"--port {given['port']}: must be between 1 and 65535")
    if "clip_max_mb" in v:
        given["clip_max_bytes"] = int(v["clip_max_mb"] * MIB)
    return Options(**given, tls=bool(v.get("tls") or v.get("ca_file")), http=http, token=token,
                   db=v.get("db") or f"sqlite:///{state / 'recorder.db'}",
                   clips_dir=v.get("clips") or str(state / "recorder-clips"))


def cmd_recorder(args) -> int:
    if args.out and not args.export:
        raise InputError("--out goes with --export")
    options = build_options(args)
    from .store import open_store

    store = open_store(options.db)  # InputError: one line, exit 2
    try:
        if args.export:
            return export(store, args.export, args.out)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="edge-audio: %(levelname)s %(name)s: %(message)s")
        return serve(store, options)
    finally:
        store.close()


def export(store, fmt: str, out: str | None) -> int:
    if out is None:
        n = store.export(fmt, sys.stdout)
    else:
        try:
            with open(out, "w", newline="", encoding="utf-8") as f:
                n = store.export(fmt, f)
        except OSError as exc:
            raise InputError(f"--out {out}: {exc.strerror or exc}") from None
    say(f"{n} events exported as {fmt}", "edge-audio recorder")
    return 0


def serve(store, options: Options) -> int:
    from .ingest import Ingest

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    ingest = Ingest(store, options)
    web = Web(store, ingest, options) if options.http else None
    try:
        if web is not None:
            web.start()  # first: an address that cannot be had is said before anything is subscribed
        ingest.start()
        where = f"http://{options.http}" if web is not None and web.server is not None else "no web server"
        log.info("recorder %s: broker %s:%s group %s, store %s, clips in %s, %s", options.the_client_id,
                 options.host, options.port, options.group, store.url, options.clips_dir, where)
        next_retention = 0.0
        while not stop.is_set():
            if (options.retention_days or options.clips_max_mb) and time.monotonic() >= next_retention:
                retain(store, options)
                next_retention = time.monotonic() + RETENTION_EVERY_S
            stop.wait(1.0)
    finally:
        ingest.stop()
        if web is not None:
            web.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        s = ingest.stats()
        log.info("recorder stopped: %d messages received, %d rows stored, %d copies already stored, rejected %s",
                 s["received"], s["stored"], s["duplicates"], s["rejected"] or "none")
    return 0


def retain(store, options: Options) -> None:
    try:
        removed = store.retention(options.retention_days, options.clips_max_mb)
        if any(removed.values()):
            log.info("retention removed %s", removed)
    except Exception as exc:  # the store may be away for a while: the next round tries again
        log.warning("retention failed: %s", exc)


class Web:
    """uvicorn serving web.py's app in a thread of its own (its signals are the command's)."""

    def __init__(self, store, ingest, options: Options):
        self.store, self.ingest, self.options = store, ingest, options
        self.server = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        from .web import make_app

        app = make_app(self.store, self.ingest, self.options)
        config = uvicorn.Config(app, host=self.options.http_host, port=self.options.http_port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="recorder-web", daemon=True)
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            time.sleep(0.02)
        if not self.server.started:
            raise InputError(f"--http {self.options.http}: cannot listen there (in use, or not an address of "
                             "this machine)")

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn's way of saying it could not bind
            pass

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
