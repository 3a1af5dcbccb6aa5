"""Shared fixtures. Real models and recordings come from EDGE_AUDIO_ASSETS (a folder laid out like the project's
asset share). Without it, tests that need them skip with the reason, unless EDGE_AUDIO_REQUIRE_ASSETS=1 (CI),
which turns the skip into a failure. The real parts (Mosquitto, sshd devices, the daemon as a process) are the
live rig's, tools/rig/; a test that uses the `broker`, `ssh_rig` or `tensorflow` fixture gets the marker of that
name (pyproject.toml lists the markers; `make test-fast` leaves those tests out)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_ASSETS_ENV = os.environ.get("EDGE_AUDIO_ASSETS")
ASSETS = Path(_ASSETS_ENV).resolve() if _ASSETS_ENV else None
REQUIRE = os.environ.get("EDGE_AUDIO_REQUIRE_ASSETS") == "1"


def _need(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason}, and EDGE_AUDIO_REQUIRE_ASSETS=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def assets() -> Path:
    if ASSETS is None:
        _need("EDGE_AUDIO_ASSETS is not set")
    if not (ASSETS / "models" / "yamnet_classification.tflite").is_file():
        _need(f"EDGE_AUDIO_ASSETS={ASSETS} holds no models/yamnet_classification.tflite")
    return ASSETS


@pytest.fixture(scope="session")
def coral_twin(assets) -> Path:
    return assets / "models" / "coral" / "yamnet_spectra_in.tflite"


@pytest.fixture(scope="session")
def waveform_model(assets) -> Path:
    return assets / "models" / "yamnet_classification.tflite"


@pytest.fixture(scope="session")
def class_map(assets) -> Path:
    return assets / "models" / "yamnet_class_map.csv"


@pytest.fixture(scope="session")
def tensorflow():
    try:
        import tensorflow as tf
    except ImportError:
        _need("TensorFlow (the tools extra) is not installed")
    return tf


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Never touch the user's installed bundle."""
    monkeypatch.setenv("EDGE_AUDIO_HOME", str(tmp_path / "home"))


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def err_lines(self) -> list[str]:
        """stderr without the interpreter library's own INFO chatter."""
        return [l for l in self.err.splitlines() if l.strip() and not l.startswith("INFO: ")]


def run_cli(*args, env: dict | None = None, module: str = "edge", timeout: float = 300, cwd: Path = ROOT) -> Result:
    """`python -m module args...`, from the repository root or (the project still importable) from `cwd`."""
    full_env = dict(os.environ, **(env or {}))
    if cwd != ROOT:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)
    return Result(proc)


@pytest.fixture(scope="session")
def own_build(assets, tensorflow, tmp_path_factory):
    """The kit's own int8 YAMNet built once per session as a user builds it: `python -m tools build` with every
    default (the source, Coral's int8 twin, fetched sha256-pinned from the mirror into ./out/models)."""
    work = tmp_path_factory.mktemp("own-build")
    r = run_cli("build", "--out", "yamnet-int8", "--keep-float", module="tools", cwd=work,
                env={"EDGE_AUDIO_ASSETS": str(assets)})
    assert r.code == 0, r.err
    return work / "yamnet-int8", r


def assert_one_line_error(r: Result, code: int = 2, *needles: str) -> str:
    assert r.code == code, (r.code, r.out, r.err)
    assert "Traceback" not in r.err, r.err
    errors = [l for l in r.err_lines if "error:" in l]
    assert len(errors) == 1, r.err
    for n in needles:
        assert n.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def miaow(assets):
    from edge.core.wavfile import read_wav
    return read_wav(assets / "audio" / "miaow_16k.wav").samples[:, 0].copy()


# a test using one of these fixtures, directly or through another fixture, gets the marker of the same name
FIXTURE_MARKERS = {"broker": "broker", "ssh_rig": "sshd", "tensorflow": "tensorflow", "postgres": "postgres"}


# When the suite runs on several workers (make test: pytest-xdist, --dist loadscope), a worker runs a module's tests
# in turn (its module fixtures are made once), and these modules together: their tests share the kit's own build
# (the own_build fixture: half a minute of TensorFlow, made once per worker that needs it).
SHARE_THE_OWN_BUILD = ("tests/integration/test_tools_build_sources.py", "tests/integration/test_train_head.py")


def worker_scope(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    return "own_build" if module in SHARE_THE_OWN_BUILD else module


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope with worker_scope's scopes."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)
    return ByScope(config, log)


# Which scopes are handed out first (they take longest): TensorFlow's, then the sshd devices', then those that start
# a broker or are slow, then the rest (LAST_TIER). A long one handed out last keeps one worker busy after the others.
TIERS = {"tensorflow": 0, "sshd": 1, "broker": 2, "postgres": 2, "slow": 2}
LAST_TIER = 3


def _tier(item) -> int:
    return min((TIERS[m.name] for m in item.iter_markers() if m.name in TIERS), default=LAST_TIER)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    if hasattr(config, "workerinput"):  # an xdist worker: the order its collection reports is the order handed out
        tiers: dict[str, int] = {}
        for item in items:
            scope = worker_scope(item.nodeid)
            tiers[scope] = min(tiers.get(scope, LAST_TIER), _tier(item))
            if "own_build" in getattr(item, "fixturenames", ()) and scope != "own_build":
                warnings.warn(f"{item.nodeid} uses own_build: list its module in SHARE_THE_OWN_BUILD")
        items.sort(key=lambda item: tiers[worker_scope(item.nodeid)])  # stable: a module's tests stay in order


@pytest.fixture
def broker(tmp_path):
    """Start Mosquitto brokers: broker(users=..., acl=..., tls=..., persistence=...); all stopped after the test."""
    from tools.rig.broker import Broker
    brokers = []

    def start(**kwargs):
        b = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(b)
        return b
    yield start
    for b in brokers:
        b.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server per test session (per worker): skipped, or failed under EDGE_AUDIO_REQUIRE_ASSETS=1,
    where it cannot run."""
    from tools.rig.postgres import Postgres, have_postgres
    why = have_postgres()
    if why:
        _need(f"{why} (make sysdeps installs it)")
    with Postgres() as server:
        yield server


@pytest.fixture
def postgres(postgres_server):
    """The session's PostgreSQL server with a database of this test's own: postgres.url (the password role's)."""
    import uuid
    postgres_server.database = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(postgres_server.database)
    return postgres_server


@pytest.fixture
def needs_ffmpeg():
    """Debian's ffmpeg (url sources, the stream server): skipped without it, or failed under
    EDGE_AUDIO_REQUIRE_ASSETS=1 (CI installs it with make sysdeps)."""
    from tools.rig.ports import have
    if not have("ffmpeg"):
        _need("ffmpeg is not installed (make sysdeps installs it)")


@pytest.fixture
def ssh_rig(tmp_path):
    """OpenSSH "devices" (none yet: ssh_rig.add("dev1")) and the client files that reach them, all stopped after
    the test; skipped, or failed under EDGE_AUDIO_REQUIRE_ASSETS=1, where sshd cannot run."""
    from tools.rig.sshd import SshRig, have_sshd
    why = have_sshd()
    if why:
        _need(f"{why} (make sysdeps installs it)")
    with SshRig(tmp_path / "rig") as rig:
        yield rig


@pytest.fixture
def rig(ssh_rig):
    """The ssh_rig with one device, dev1: what the deploy tests install on."""
    ssh_rig.add("dev1")
    return ssh_rig
