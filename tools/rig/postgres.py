"""PostgreSQL for the tests and benchmarks: Debian's server (initdb, pg_ctl) on a temporary data folder, listening on
127.0.0.1 and a free port (its unix socket in its own folder). As root it runs as the `postgres` user (runuser);
as anyone else, as that user. Trusted from loopback for the superuser; one login role, `recorder`, needs its
password (scram-sha-256), and owns the database that .url names (`edge`, or another made by create_database)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .ports import RigError, free_port

ROLE = "recorder"
DATABASE = "edge"


def bindir() -> Path | None:
    """The folder with initdb and pg_ctl: pg_config's, the newest /usr/lib/postgresql/*/bin, or PATH's."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def have_postgres() -> str:
    """Why this machine cannot start a PostgreSQL server ("" when it can)."""
    if bindir() is None:
        return "PostgreSQL is not installed (no initdb/pg_ctl; sudo apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]': the recorder extra)"
    return ""


class Postgres:
    """start() makes and starts the server; stop() stops it and removes its folder. A context manager too."""

    def __init__(self, password: str = "s3cret-pw", fsync: bool = False):
        self.password = password
        self.fsync = fsync  # off by default: a test's data need not outlive the machine, only the server
        self.port = 0
        self.database = DATABASE  # the one .url names
        self.folder: Path | None = None
        self._bin = bindir()

    @property
    def url(self) -> str:
        """The recorder's URL: the password-authenticated role and its database."""
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        """The superuser, trusted from loopback."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*as_postgres, str(self._bin / args[0]), *args[1:]], capture_output=True,
                                text=True, timeout=timeout, cwd="/")
        if result.returncode:
            tail = " ".join((result.stderr or result.stdout).split())[-300:]
            raise RigError(f"{args[0]} failed ({result.returncode}): {tail}")
        return result

    def start(self) -> "Postgres":
        why = have_postgres()
        if why:
            raise RigError(why)
        self.folder = Path(tempfile.mkdtemp(prefix="edge-audio-pg-"))  # under /tmp: the postgres user reaches it
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data, self.port = self.folder / "data", free_port()
        try:
            self._run("initdb", "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C", "--auth=trust")
            (data / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n")
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}"
            if not self.fsync:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
                      "-t", "60", "start")
            self.create_database(DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """A new database owned by the recorder role (made with it the first time): its URL."""
        import psycopg
        from psycopg import sql
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(self.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE)))
        return self.url_for(name)

    def stop(self) -> None:
        if self.folder is None:
            return
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop")
            except (RigError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
