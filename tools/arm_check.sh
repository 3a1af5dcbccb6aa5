#!/usr/bin/env bash
# Prove the device runtime on aarch64 (Raspberry Pi OS bookworm = Debian 12 arm64, Python 3.11) under emulation:
# a Debian bookworm arm64 root run through qemu-user-static (binfmt_misc), the repository installed from PyPI's
# aarch64 wheels (NumPy + ai-edge-litert), then real classification with the expected classes asserted.
#
#   make arm-check            (or: sudo tools/arm_check.sh)
#
# Environment:
#   EDGE_AUDIO_ASSETS   models + recordings, mounted read-only (default: ../shared beside the repository)
#   ARM_CHECK_ROOT      arm64 root (default: out/arm64-root; made once, reused on later runs)
#   ARM_CHECK_MIRROR    Debian mirror (default: the one this host's apt uses)
#   ARM_CHECK_QEMU_CPU  emulated CPU model (default: cortex-a72 = Pi 4; cortex-a76 = Pi 5). Never "max":
#                       ai-edge-litert 2.x returns wrong scores silently on it.
#   ARM_CHECK_BENCH_SECONDS  seconds per timed loop of the emulated bench (default 3; 0 skips it)
#
# Timings printed here are EMULATED (100x or more slower than native): they prove nothing about a board's speed.
# Exit status: 0 every assertion held, 1 an assertion failed, 2 the host cannot run the check.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASSETS=$(cd "${EDGE_AUDIO_ASSETS:-$REPO/../shared}" 2>/dev/null && pwd) || {
  echo "arm-check: asset folder ${EDGE_AUDIO_ASSETS:-$REPO/../shared} not found (set EDGE_AUDIO_ASSETS)" >&2; exit 2; }
ROOT=${ARM_CHECK_ROOT:-$REPO/out/arm64-root}
QEMU_CPU_MODEL=${ARM_CHECK_QEMU_CPU:-cortex-a72}
BENCH_SECONDS=${ARM_CHECK_BENCH_SECONDS:-3}
SUITE=bookworm
READY=$ROOT/.arm-check-ready          # written once the root is complete
VENV=/opt/edge-audio-venv             # inside the root
WORK=/tmp/arm-check                   # inside the root: outputs of this run
HOST_PACKAGES="debootstrap qemu-user-static binfmt-support"
T0=$(date +%s)

step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
info() { printf '   %s\n' "$*"; }
die()  { local code=$1; shift; echo "arm-check: FAILED: $*" >&2; exit "$code"; }

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
    echo "arm-check: missing host packages; run as root: apt-get install -y $missing" >&2; exit 2
  fi
  info "installing $missing"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing > /tmp/arm-check-apt.log 2>&1 \
    || { tail -5 /tmp/arm-check-apt.log >&2; die 2 "apt-get install $missing failed"; }
fi
info "ok"
[ "$(id -u)" = 0 ] || { echo "arm-check: needs root (debootstrap, chroot, mounts): sudo $0" >&2; exit 2; }

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
trap cleanup EXIT
trap 'exit 130' INT TERM
mounted_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts; }
bind() {   # bind SRC DST [ro]
  mkdir -p "$2" 2>/dev/null || true
  [ -e "$2" ] || touch "$2"
  mount --bind "$1" "$2"; MOUNTS+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# Runs a command in the root, with a clean environment and the emulated CPU model.
in_root() {
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    QEMU_CPU="$QEMU_CPU_MODEL" OPENBLAS_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} \
    chroot "$ROOT" "$@"
}

# ---------------------------------------------------------------- the arm64 root (once)
step "Debian $SUITE arm64 root in $ROOT"
[ -z "$(mounted_under "$ROOT")" ] || die 2 "something is still mounted under $ROOT: $(mounted_under "$ROOT" | xargs)"
if [ -f "$READY" ]; then
  info "reusing it (delete $ROOT to rebuild)"
else
  MIRROR=${ARM_CHECK_MIRROR:-}
  if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / '"$SUITE"'( |$)/ {print u; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
    MIRROR=$(awk '$1 == "deb" && $0 ~ " '"$SUITE"' " {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  info "mirror $MIRROR"
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
step "mounts: /proc (+ an ARM Pi 4 /proc/cpuinfo), /dev, repository and assets read-only"
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
mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/repo" "$ROOT/assets"
mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
bind "$CPUINFO" "$ROOT/proc/cpuinfo" ro
bind /dev "$ROOT/dev"
bind "$REPO" "$ROOT/repo" ro
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

# ---------------------------------------------------------------- the device runtime from PyPI
step "venv + pip install the repository with the litert extra (aarch64 wheels from PyPI)"
[ -x "$ROOT$VENV/bin/python" ] || in_root python3 -m venv "$VENV"
# pip builds in the source tree, and the repository is mounted read-only: install from a copy (sources only).
rm -rf "$ROOT/tmp/edge-audio-src"; mkdir -p "$ROOT/tmp/edge-audio-src"
tar -C "$REPO" --exclude=./out --exclude=./.venv --exclude=./.git --exclude='*.egg-info' --exclude=./build \
  --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$ROOT/tmp/edge-audio-src" -xf -
in_root pip install -q "/tmp/edge-audio-src[litert]" > "$ROOT/../arm64-pip.log" 2>&1 \
  || { tail -20 "$ROOT/../arm64-pip.log" >&2; die 2 "pip install in the root failed: see out/arm64-pip.log"; }
info "$(in_root pip list 2>/dev/null | awk '$1 ~ /^(numpy|ai-edge-litert|edge-audio)$/ {printf "%s %s  ", $1, $2}')"

# ---------------------------------------------------------------- checks
FAILS=0
pass() { info "PASS $*"; }
fail() { info "FAIL $*"; FAILS=$((FAILS + 1)); }
rm -rf "$ROOT$WORK"; mkdir -p "$ROOT$WORK"
M=/assets/models; A=/assets/audio

# check_top FILE K CLASS... : one of CLASS is in the summary's top K of FILE (JSON lines of `classify --json`)
check_top() {
  in_root python3 - "$@" <<'EOF'
import json, sys
path, k, wanted = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summary = [d for d in map(json.loads, open(path)) if d.get("summary")][-1]
top = [c["label"] for c in summary["top"][:k]]
print("   summary top-%d over %d windows: %s" % (k, summary["windows"],
      ", ".join("%s %.3f" % (c["label"], c["score"]) for c in summary["top"][:k])))
sys.exit(0 if any(w in top for w in wanted) else 1)
EOF
}

step "doctor"
if in_root edge-audio doctor --json > "$ROOT$WORK/doctor.json" 2> "$ROOT$WORK/doctor.err"; then
  if in_root python3 - "$WORK/doctor.json" <<'EOF'
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
if in_root edge-audio classify $A/miaow_16k.wav --model $M/coral/yamnet_spectra_in.tflite \
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
if in_root edge-audio classify $A/speech_whistling2.wav --model $M/yamnet_classification.tflite \
     --labels $M/yamnet_class_map.csv --json > "$ROOT$WORK/whistle.jsonl" 2> "$ROOT$WORK/whistle.err"; then
  grep '^edge-audio:' "$ROOT$WORK/whistle.err" | sed 's/^/   /' || true
  info "took $(( $(date +%s) - t )) s (emulated)"
  if check_top "$WORK/whistle.jsonl" 3 Whistle Whistling; then
    pass "Whistle / Whistling in the summary top-3"
  else fail "no Whistle / Whistling in the summary top-3"; fi
else
  cat "$ROOT$WORK/whistle.err" >&2; fail "classify speech_whistling2.wav exited non-zero"
fi

step "classify --delegate edgetpu without libedgetpu: exit 2, one line"
set +e
in_root edge-audio classify $A/miaow_16k.wav --model $M/coral/yamnet_spectra_in.tflite \
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
    if in_root edge-audio bench --model $M/$model --labels $M/yamnet_class_map.csv --delegate cpu \
         --seconds "$BENCH_SECONDS" --audio $A/speech_whistling2.wav --json \
         > "$ROOT$WORK/bench-$name.json" 2> "$ROOT$WORK/bench-$name.err"; then
      line=$(in_root python3 - "$WORK/bench-$name.json" <<'EOF'
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

step "summary"
info "aarch64 root: $(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME"), $(in_root python3 --version), QEMU_CPU=$QEMU_CPU_MODEL"
info "runtime: $(in_root pip list 2>/dev/null | awk '$1 ~ /^(numpy|ai-edge-litert)$/ {printf "%s %s  ", $1, $2}')"
[ -z "$BENCH" ] || { info "emulated per-window timing (qemu-user, NOT a board figure):"; printf '%s' "$BENCH"; }
info "outputs: $ROOT$WORK"
info "total $(( $(date +%s) - T0 )) s"
if [ "$FAILS" = 0 ]; then
  echo "arm-check: OK: every assertion held on aarch64"
else
  echo "arm-check: FAILED: $FAILS assertion(s) did not hold" >&2; exit 1
fi
