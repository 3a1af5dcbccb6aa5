#!/usr/bin/env bash
# Prove the device runtime on aarch64 (Raspberry Pi OS bookworm = Debian 12 arm64, Python 3.11) under emulation:
# a Debian bookworm arm64 root run through qemu-user-static (binfmt_misc) gets the kit the way an offline board
# does: the deploy tool's wheelhouse is built on this host (`python -m tools wheelhouse`, aarch64 wheels from the
# package index this host's pip uses), and inside the root, with the network off (unshare --net), the device-side
# release step installs it (`edge-audio release install`: venv, selftest, switch) and `edge-audio selftest` passes.
# Then real classification with the expected classes asserted, and emulated timing beside this host's.
#
#   make arm-check            (or: sudo PYTHON=.venv/bin/python tools/deploy/arm_check.sh)
#
# Environment:
#   PYTHON              host interpreter with the repository's requirements (default: .venv/bin/python, python3)
#   EDGE_AUDIO_ASSETS   models + recordings, mounted read-only (default: ../shared beside the repository)
#   ARM_CHECK_ROOT      arm64 root (default: out/arm64-root; made once, reused on later runs)
#   ARM_CHECK_MIRROR    Debian mirror (default: the one this host's apt uses: /etc/apt/sources.list,
#                       sources.list.d/*.list and deb822 *.sources; apt's Acquire::http::Proxy is honoured)
#   ARM_CHECK_QEMU_CPU  emulated CPU model (default: cortex-a72 = Pi 4; cortex-a76 = Pi 5). Never "max":
#                       ai-edge-litert 2.x returns wrong scores silently on it.
#   ARM_CHECK_BENCH_SECONDS  seconds per timed loop of the emulated bench (default 3; 0 skips it)
#
# Timings printed here are EMULATED (100x or more slower than native): they prove nothing about a board's speed.
# Exit status: 0 every assertion held, 1 an assertion failed, 2 the host cannot run the check (no binfmt_misc,
# no root, no debootstrap, ...): said loudly, on one line starting "arm-check: CANNOT RUN". The status is also
# written to out/arm-check.status (make turns every failure into its own exit 2).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$REPO/out"
trap 'echo $? > "$REPO/out/arm-check.status"' EXIT   # replaced by finish() once mounts exist
PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x "$REPO/.venv/bin/python" ] && PY=$REPO/.venv/bin/python || PY=python3; }
ASSETS=$(cd "${EDGE_AUDIO_ASSETS:-$REPO/../shared}" 2>/dev/null && pwd) || {
  echo "arm-check: asset folder ${EDGE_AUDIO_ASSETS:-$REPO/../shared} not found (set EDGE_AUDIO_ASSETS)" >&2; exit 2; }
ROOT=${ARM_CHECK_ROOT:-$REPO/out/arm64-root}
QEMU_CPU_MODEL=${ARM_CHECK_QEMU_CPU:-cortex-a72}
BENCH_SECONDS=${ARM_CHECK_BENCH_SECONDS:-3}
SUITE=bookworm
READY=$ROOT/.arm-check-ready          # written once the root is complete
PREFIX=/opt/edge-audio                # inside the root: the release layout a deploy makes on a board
VENV=$PREFIX/current/venv             # inside the root
WORK=/tmp/arm-check                   # inside the root: outputs of this run
HOUSE=$REPO/out/arm64-wheelhouse      # on the host: the offline wheelhouse for aarch64-cp311
EXTRAS=litert,mqtt,clips              # pyalsaaudio is source only: a board compiles it (see docs/deploy.md)
HOST_PACKAGES="debootstrap qemu-user-static binfmt-support"
T0=$(date +%s)

step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
info() { printf '   %s\n' "$*"; }
die()  {
  local code=$1; shift
  if [ "$code" = 2 ]; then echo "arm-check: CANNOT RUN: $*" >&2; else echo "arm-check: FAILED: $*" >&2; fi
  exit "$code"
}

[ "$(uname -m)" = x86_64 ] || [ "$(uname -m)" = aarch64 ] || die 2 "unsupported host $(uname -m)"
for f in audio/miaow_16k.wav audio/speech_whistling2.wav models/coral/yamnet_spectra_in.tflite \
         models/yamnet_classification.tflite models/yamnet_class_map.csv; do
  [ -f "$ASSETS/$f" ] || die 2 "missing asset $ASSETS/$f (set EDGE_AUDIO_ASSETS)"
done

# ---------------------------------------------------------------- host packages
step "host packages: $HOST_PACKAGES"
missing=$(for p in $HOST_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | xargs)
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die 2 "missing host packages; run as root: apt-get install -y $missing"
  fi
  info "installing $missing"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing > /tmp/arm-check-apt.log 2>&1 \
    || { tail -5 /tmp/arm-check-apt.log >&2; die 2 "apt-get install $missing failed"; }
fi
info "ok"
[ "$(id -u)" = 0 ] || die 2 "needs root (debootstrap, chroot, mounts): sudo $0"

# ---------------------------------------------------------------- binfmt_misc
step "binfmt_misc handler for aarch64"
BINFMT=/proc/sys/fs/binfmt_misc
if [ "$(uname -m)" = aarch64 ]; then
  info "native aarch64 host: no emulation needed"
else
  if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
      || die 2 "cannot mount binfmt_misc on $BINFMT (kernel without CONFIG_BINFMT_MISC, or no permission)"
  fi
  if ! grep -qx enabled "$BINFMT/qemu-aarch64" 2>/dev/null; then
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  grep -qx enabled "$BINFMT/qemu-aarch64" 2>/dev/null \
    || die 2 "binfmt_misc has no enabled qemu-aarch64 handler (update-binfmts --enable qemu-aarch64 failed)"
  info "$(sed -n 's/^interpreter /interpreter /p; s/^flags: /flags /p' "$BINFMT/qemu-aarch64" | xargs)"
fi
QEMU_STATIC=$(command -v qemu-aarch64-static || true)

# ---------------------------------------------------------------- mounts (always undone)
MOUNTS=()
cleanup() {
  local i
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null \
      || echo "arm-check: could not unmount ${MOUNTS[i]}" >&2
  done
  MOUNTS=()
}
finish() { local code=$?; cleanup; echo "$code" > "$REPO/out/arm-check.status"; }
trap finish EXIT
trap 'exit 130' INT TERM
mounted_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts; }
bind() {   # bind SRC DST [ro]
  mkdir -p "$2" 2>/dev/null || true
  [ -e "$2" ] || touch "$2"
  mount --bind "$1" "$2"; MOUNTS+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# Runs a command in the root, with a clean environment and the emulated CPU model. `offline` does the same in a
# network namespace of its own (loopback only): the board has no internet.
in_root() {
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    QEMU_CPU="$QEMU_CPU_MODEL" OPENBLAS_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    chroot "$ROOT" "$@"
}
offline() {
  unshare --net -- env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    QEMU_CPU="$QEMU_CPU_MODEL" OPENBLAS_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 chroot "$ROOT" "$@"
}

# The Debian mirror this host's apt uses for $SUITE: one-line sources (sources.list, sources.list.d/*.list), then
# deb822 stanzas (sources.list.d/*.sources) with Types deb, the suite, component main and arm64 allowed.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { sub(/\[[^]]*\]/, ""); if ($3 == suite) for (i = 4; i <= NF; i++)
      if ($i == "main") { print $2; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v RS= -v suite="$SUITE" '{
      delete v; n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) if (lines[i] !~ /^#/ && match(lines[i], /^[A-Za-z-]+:/)) {
        k = tolower(substr(lines[i], 1, RLENGTH - 1)); v[k] = " " substr(lines[i], RLENGTH + 1) " " }
      if (v["types"] ~ / deb / && v["suites"] ~ (" " suite " ") && v["components"] ~ / main / &&
          v["enabled"] !~ / no / && (v["architectures"] == "" || v["architectures"] ~ / arm64 /)) {
        split(v["uris"], u, " "); print u[1]; exit }
    }' "$f"
  done
}

# ---------------------------------------------------------------- the arm64 root (once)
step "Debian $SUITE arm64 root in $ROOT"
[ -z "$(mounted_under "$ROOT")" ] || die 2 "something is still mounted under $ROOT: $(mounted_under "$ROOT" | xargs)"
if [ -f "$READY" ]; then
  info "reusing it (delete $ROOT to rebuild)"
else
  MIRROR=${ARM_CHECK_MIRROR:-$(apt_mirror | head -1)}
  [ -n "$MIRROR" ] || die 2 "no Debian $SUITE mirror in this host's apt sources (set ARM_CHECK_MIRROR)"
  APT_PROXY=""
  eval "$(apt-config shell APT_PROXY Acquire::http::Proxy 2>/dev/null)" || true
  if [ -n "$APT_PROXY" ] && [ -z "${http_proxy:-}" ]; then export http_proxy=$APT_PROXY; fi
  SOURCE="from the apt sources of this host"; [ -z "${ARM_CHECK_MIRROR:-}" ] || SOURCE="ARM_CHECK_MIRROR"
  info "mirror $MIRROR ($SOURCE)${http_proxy:+, proxy $http_proxy}"
  rm -rf "$ROOT"; mkdir -p "$(dirname "$ROOT")"
  info "first stage (debootstrap --foreign --variant=minbase)"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" > "$ROOT.debootstrap.log" 2>&1 \
    || die 2 "debootstrap first stage failed: see $ROOT.debootstrap.log"
  [ -n "$QEMU_STATIC" ] && cp "$QEMU_STATIC" "$ROOT/usr/bin/"
  info "second stage (emulated, a few minutes)"
  in_root /debootstrap/debootstrap --second-stage >> "$ROOT.debootstrap.log" 2>&1 \
    || die 2 "debootstrap second stage failed: see $ROOT.debootstrap.log (and $ROOT/debootstrap/debootstrap.log)"
  touch "$READY"
  info "done"
fi
in_root /bin/true || die 2 "cannot execute arm64 binaries in $ROOT"

# ---------------------------------------------------------------- mounts for this run
step "mounts: /proc (+ an ARM Pi 4 /proc/cpuinfo), /dev, assets read-only"
# qemu-user passes the host's x86 /proc/cpuinfo through; ai-edge-litert 2.x can crash on it. This is a Pi 4 (BCM2711,
# Cortex-A72) cpuinfo with one entry per host CPU, so that it agrees with the CPU count the kernel reports.
CPUINFO=$ROOT/../arm64-cpuinfo
{
  for (( i=0; i<$(nproc); i++ )); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 0000000000000000\n'
} > "$CPUINFO"
mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/assets"
mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
bind "$CPUINFO" "$ROOT/proc/cpuinfo" ro
bind /dev "$ROOT/dev"
bind "$ASSETS" "$ROOT/assets" ro
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# Trust the same locally added certificate authorities as this host (TLS-inspecting proxies in front of PyPI).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  if ! diff -rq /usr/local/share/ca-certificates "$ROOT/usr/local/share/ca-certificates" >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null 2>&1 || die 2 "update-ca-certificates failed in the root"
  fi
fi
info "$(in_root uname -m) | $(in_root python3 --version) | $(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME") | QEMU_CPU=$QEMU_CPU_MODEL"
in_root python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || die 1 "the root's Python is not 3.11"

# ---------------------------------------------------------------- the upload, built on this host
INDEX=${PIP_INDEX_URL:-$("$PY" -m pip config get global.index-url 2>/dev/null || true)}
step "offline wheelhouse for aarch64-cp311, from the package index of this host's pip (${INDEX:-PyPI})"
cd "$REPO"
"$PY" -c 'import edge, tools' 2>/dev/null || die 2 "$PY cannot import the repository (make venv, or set PYTHON)"
"$PY" -m tools wheelhouse --platform aarch64-cp311-glibc2.36 --extras "$EXTRAS" --out "$HOUSE" > /dev/null \
  || die 2 "building the aarch64 wheelhouse failed (see above)"
WHEEL=$(cd "$HOUSE" && ls edge_audio-*.whl | head -1)
info "$(ls "$HOUSE/aarch64-cp311" | wc -l) files, $(du -sm "$HOUSE/aarch64-cp311" | cut -f1) MiB: $(cd "$HOUSE/aarch64-cp311" && ls | sed 's/-[0-9].*//' | xargs)"
STAGE=$PREFIX/incoming/arm-check
rm -rf "${ROOT:?}$PREFIX"; mkdir -p "$ROOT$STAGE/wheels"
cp "$HOUSE/aarch64-cp311/"* "$ROOT$STAGE/wheels/"
"$PY" -m edge fetch bundle --mirror "$ASSETS" --dest "$ROOT$STAGE/bundle" > /dev/null 2>&1 \
  || die 2 "installing the default bundle from $ASSETS failed"
printf '%s\n' '# arm-check: a recording replayed as the microphone, no broker' '[device]' 'id = "arm-check"' \
  '[audio]' 'source = "wav"' 'file = "/assets/audio/miaow_16k.wav"' 'realtime = false' \
  '[model]' 'delegate = "auto"' '[mqtt]' 'enabled = false' > "$ROOT$STAGE/config.toml"
info "staged in $ROOT$STAGE: wheels, the default bundle with its self-test clip, a config"

# ---------------------------------------------------------------- install with the network off
step "edge-audio release install in the root, network off (unshare --net), from the wheelhouse only"
ifaces=$(offline python3 -c 'import socket; print(" ".join(n for _, n in socket.if_nameindex()))')
[ "$ifaces" = lo ] || die 1 "the network namespace is not empty: $ifaces"
info "network interfaces inside: $ifaces"
t=$(date +%s)
if offline env PYTHONPATH="$STAGE/wheels/$WHEEL" python3 -m edge.app.release install --prefix "$PREFIX" \
     --stage "$STAGE" --extras "$EXTRAS" --json > "$ROOT/../arm64-release.json" 2> "$ROOT/../arm64-release.log"; then
  sed 's/^edge-audio: /   /' "$ROOT/../arm64-release.log"
  info "installed, selftest passed and switched in $(( $(date +%s) - t )) s (emulated)"
else
  sed 's/^/   /' "$ROOT/../arm64-release.log" >&2
  die 1 "the release step failed in the arm64 root (see out/arm64-release.log)"
fi
info "$(offline pip list 2>/dev/null | awk '$1 ~ /^(numpy|ai-edge-litert|edge-audio|paho-mqtt)$/ {printf "%s %s  ", $1, $2}')"

# ---------------------------------------------------------------- checks
FAILS=0
pass() { info "PASS $*"; }
fail() { info "FAIL $*"; FAILS=$((FAILS + 1)); }
rm -rf "$ROOT$WORK"; mkdir -p "$ROOT$WORK"
M=/assets/models; A=/assets/audio

# check_top FILE K CLASS... : one of CLASS is in the summary's top K of FILE (JSON lines of `classify --json`)
check_top() {
  offline python3 - "$@" <<'EOF'
import json, sys
path, k, wanted = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summary = [d for d in map(json.loads, open(path)) if d.get("summary")][-1]
top = [c["label"] for c in summary["top"][:k]]
print("   summary top-%d over %d windows: %s" % (k, summary["windows"],
      ", ".join("%s %.3f" % (c["label"], c["score"]) for c in summary["top"][:k])))
sys.exit(0 if any(w in top for w in wanted) else 1)
EOF
}

step "edge-audio selftest of the current release (network off)"
if offline edge-audio selftest --config $PREFIX/current/config.toml --json > "$ROOT$WORK/selftest.json" \
     2> "$ROOT$WORK/selftest.err"; then
  offline python3 - "$WORK/selftest.json" <<'EOF'
import json, sys
for c in json.load(open(sys.argv[1]))["checks"]:
    print("   %-7s %-7s %s" % (c["status"], c["name"], c["detail"]))
EOF
  pass "selftest passed on aarch64 (exit 0)"
else
  cat "$ROOT$WORK/selftest.err" >&2; fail "edge-audio selftest exited non-zero"
fi

step "edge-audio fetch from an offline mirror on the device (network off)"
if offline edge-audio fetch bundle --mirror /assets --dest $PREFIX/state/models/yamnet-coral \
     > /dev/null 2> "$ROOT$WORK/fetch.err" && offline edge-audio selftest --bundle $PREFIX/state/models/yamnet-coral \
     > /dev/null 2>&1; then
  pass "the default bundle installs from the mirror and passes selftest"
else
  cat "$ROOT$WORK/fetch.err" >&2; fail "edge-audio fetch bundle --mirror failed"
fi

step "doctor"
if offline edge-audio doctor --json > "$ROOT$WORK/doctor.json" 2> "$ROOT$WORK/doctor.err"; then
  if offline python3 - "$WORK/doctor.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("   machine: %s | backend: %s | Edge TPU library: %s" % (d["machine"], d["backend_in_use"], d["edgetpu_library"]))
sys.exit(0 if d["machine"].endswith("aarch64") and str(d["backend_in_use"]).startswith("ai_edge_litert") else 1)
EOF
  then pass "doctor reports aarch64 with ai_edge_litert"; else fail "doctor does not report aarch64 + ai_edge_litert"; fi
else
  cat "$ROOT$WORK/doctor.err" >&2; fail "edge-audio doctor exited non-zero"
fi

step "classify miaow_16k.wav with Coral's int8 CPU twin (yamnet_spectra_in.tflite), delegate auto"
t=$(date +%s)
if offline edge-audio classify $A/miaow_16k.wav --model $M/coral/yamnet_spectra_in.tflite \
     --labels $M/yamnet_class_map.csv --json > "$ROOT$WORK/miaow.jsonl" 2> "$ROOT$WORK/miaow.err"; then
  grep '^edge-audio:' "$ROOT$WORK/miaow.err" | sed 's/^/   /' || true
  info "took $(( $(date +%s) - t )) s (emulated)"
  if check_top "$WORK/miaow.jsonl" 5 Cat Meow "Domestic animals, pets"; then
    pass "Cat / Meow / Domestic animals, pets in the summary top-5"
  else fail "no Cat / Meow / Domestic animals, pets in the summary top-5"; fi
else
  cat "$ROOT$WORK/miaow.err" >&2; fail "classify miaow_16k.wav exited non-zero"
fi

step "classify speech_whistling2.wav with the waveform model (yamnet_classification.tflite)"
t=$(date +%s)
if offline edge-audio classify $A/speech_whistling2.wav --model $M/yamnet_classification.tflite \
     --labels $M/yamnet_class_map.csv --json > "$ROOT$WORK/whistle.jsonl" 2> "$ROOT$WORK/whistle.err"; then
  grep '^edge-audio:' "$ROOT$WORK/whistle.err" | sed 's/^/   /' || true
  info "took $(( $(date +%s) - t )) s (emulated)"
  if check_top "$WORK/whistle.jsonl" 3 Whistle Whistling; then
    pass "Whistle / Whistling in the summary top-3"
  else fail "no Whistle / Whistling in the summary top-3"; fi
else
  cat "$ROOT$WORK/whistle.err" >&2; fail "classify speech_whistling2.wav exited non-zero"
fi

step "the daemon with clips on: a FLAC clip through soundfile's aarch64 libsndfile, read back (network off)"
printf '%s\n' '[device]' 'id = "arm-check"' '[audio]' 'source = "wav"' 'file = "/assets/audio/miaow_16k.wav"' \
  'realtime = false' '[model]' "path = \"$PREFIX/state/models/yamnet-coral\"" '[mqtt]' 'enabled = false' \
  '[jsonl]' 'enabled = true' \
  "path = \"$WORK/clips-events.jsonl\"" '[clips]' 'enabled = true' "folder = \"$WORK/clips\"" 'privacy = "off"' \
  'min_free_mb = 1' > "$ROOT$WORK/clips.toml"
if offline edge-audio run --config $WORK/clips.toml > /dev/null 2> "$ROOT$WORK/clips-run.err" \
   && offline edge-audio clips --folder $WORK/clips --json > "$ROOT$WORK/clips.jsonl" 2>> "$ROOT$WORK/clips-run.err"; then
  first=$(offline python3 -c 'import json, sys
kept = [r for r in map(json.loads, open(sys.argv[1])) if r["status"] == "kept" and r["format"] == "flac"]
print(kept[0]["event_id"] if kept else "")' "$WORK/clips.jsonl")
  if [ -n "$first" ] && offline edge-audio clips --folder $WORK/clips out "$first" $WORK/clip.wav > /dev/null \
     2>> "$ROOT$WORK/clips-run.err"; then
    pass "a FLAC clip written and decoded on aarch64 ($(grep -c . "$ROOT$WORK/clips.jsonl") clips, $(stat -c %s "$ROOT$WORK/clip.wav") B as WAV)"
  else cat "$ROOT$WORK/clips-run.err" >&2; fail "no FLAC clip was kept, or it could not be read back"; fi
else
  cat "$ROOT$WORK/clips-run.err" >&2; fail "the daemon with clips on (or edge-audio clips) exited non-zero"
fi

step "classify --delegate edgetpu without libedgetpu: exit 2, one line"
set +e
offline edge-audio classify $A/miaow_16k.wav --model $M/coral/yamnet_spectra_in.tflite \
  --labels $M/yamnet_class_map.csv --delegate edgetpu > "$ROOT$WORK/edgetpu.out" 2> "$ROOT$WORK/edgetpu.err"
rc=$?
set -e
lines=$(grep -c . "$ROOT$WORK/edgetpu.err" || true)
sed 's/^/   /' "$ROOT$WORK/edgetpu.err"
if [ "$rc" = 2 ] && [ "$lines" = 1 ] && [ ! -s "$ROOT$WORK/edgetpu.out" ]; then
  pass "exit 2 with one line"
else fail "expected exit 2 and one line on stderr, got exit $rc and $lines lines"; fi

BENCH=""
if [ "$BENCH_SECONDS" != 0 ]; then
  step "bench, CPU, 1 thread, ${BENCH_SECONDS} s loops (EMULATED: 100x or more slower than native, NOT a board figure)"
  for model in coral/yamnet_spectra_in.tflite yamnet_classification.tflite; do
    name=$(basename "$model" .tflite)
    if offline edge-audio bench --model $M/$model --labels $M/yamnet_class_map.csv --delegate cpu \
         --seconds "$BENCH_SECONDS" --audio $A/speech_whistling2.wav --json \
         > "$ROOT$WORK/bench-$name.json" 2> "$ROOT$WORK/bench-$name.err"; then
      line=$(offline python3 - "$WORK/bench-$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
f = lambda k: "%.1f ms" % r[k]["p50"] if r.get(k) else "none"
print("%-28s invoke p50 %s | front end p50 %s | end to end p50 %s per window | %.1f windows/s" %
      (r["model"], f("invoke_ms"), f("frontend_ms"), f("e2e_ms"), r["windows_per_s"]))
EOF
      ) || line="$name: could not read the bench result"
      info "$line"; BENCH+="   $line"$'\n'
    else
      tail -3 "$ROOT$WORK/bench-$name.err" >&2; info "bench of $name failed (not an assertion)"
    fi
  done
fi

step "the same on this host (native), for comparison"
HOSTOUT=$REPO/out/arm64-host; rm -rf "$HOSTOUT"; mkdir -p "$HOSTOUT"
"$PY" -m edge classify "$ASSETS/audio/miaow_16k.wav" --model "$ASSETS/models/coral/yamnet_spectra_in.tflite" \
  --labels "$ASSETS/models/yamnet_class_map.csv" --json > "$HOSTOUT/miaow.jsonl" 2>/dev/null || true
"$PY" -m edge classify "$ASSETS/audio/speech_whistling2.wav" --model "$ASSETS/models/yamnet_classification.tflite" \
  --labels "$ASSETS/models/yamnet_class_map.csv" --json > "$HOSTOUT/whistle.jsonl" 2>/dev/null || true
if [ "$BENCH_SECONDS" != 0 ]; then
  for model in coral/yamnet_spectra_in.tflite yamnet_classification.tflite; do
    OPENBLAS_NUM_THREADS=1 "$PY" -m edge bench --model "$ASSETS/models/$model" \
      --labels "$ASSETS/models/yamnet_class_map.csv" --delegate cpu --seconds "$BENCH_SECONDS" \
      --audio "$ASSETS/audio/speech_whistling2.wav" --json > "$HOSTOUT/bench-$(basename "$model" .tflite).json" \
      2>/dev/null || true
  done
fi
"$PY" - "$HOSTOUT" "$ROOT$WORK" "$(uname -m)" <<'EOF' || info "(could not compare: see the outputs)"
import json, sys
from pathlib import Path
host, emu, machine = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def top(folder, name):
    try:
        s = [d for d in map(json.loads, (folder / name).read_text().splitlines()) if d.get("summary")][-1]
        return ", ".join("%s %.2f" % (c["label"], c["score"]) for c in s["top"][:3])
    except (OSError, ValueError, IndexError):
        return "-"

def e2e(folder, name):
    try:
        return json.loads((folder / name).read_text())["runs"][0]["e2e_ms"]["p50"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None

print("   %-42s %-52s %s" % ("", f"host {machine} (native)", "aarch64 (qemu, EMULATED)"))
for what, name in (("miaow_16k.wav top-3, Coral int8 twin", "miaow.jsonl"),
                   ("speech_whistling2.wav top-3, waveform", "whistle.jsonl")):
    print("   %-42s %-52s %s" % (what, top(host, name), top(emu, name)))
for what, name in (("int8 twin, end to end p50 per window", "bench-yamnet_spectra_in.json"),
                   ("waveform model, end to end p50 per window", "bench-yamnet_classification.json")):
    h, e = e2e(host, name), e2e(emu, name)
    ratio = " (%.0fx)" % (e / h) if h and e else ""
    print("   %-42s %-52s %s" % (what, "%.2f ms" % h if h else "-", ("%.1f ms" % e if e else "-") + ratio))
EOF

step "summary"
info "aarch64 root: $(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME"), $(offline python3 --version), QEMU_CPU=$QEMU_CPU_MODEL"
info "runtime: $(offline pip list 2>/dev/null | awk '$1 ~ /^(numpy|ai-edge-litert)$/ {printf "%s %s  ", $1, $2}')"
info "installed offline from $HOUSE/aarch64-cp311 ($(du -sm "$HOUSE/aarch64-cp311" | cut -f1) MiB) as release $(offline edge-audio release list --prefix $PREFIX 2>/dev/null | awk '$1 == "*" {print $2}')"
[ -z "$BENCH" ] || { info "emulated per-window timing (qemu-user, NOT a board figure):"; printf '%s' "$BENCH"; }
info "outputs: $ROOT$WORK"
info "total $(( $(date +%s) - T0 )) s"
if [ "$FAILS" = 0 ]; then
  echo "arm-check: OK: every assertion held on aarch64"
else
  echo "arm-check: FAILED: $FAILS assertion(s) did not hold" >&2; exit 1
fi
