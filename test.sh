#!/usr/bin/env bash
# The whole HostOS test suite, in tiers: (1) unit and (2) privileged host tests
# (tests/HostOs.UnitTests; root-only ones skip for other users), then the images are
# built, then (2) the runc lifecycle script against hostos-runc and runc on this host, then (3)
# QEMU tests boot the images (qemu-tests/). Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
passed=0 failed=0 skipped=0 broken=()

run_tests() { # name project
  local log="out/test-$1.log"
  mkdir -p out
  echo "== tests: $1"
  dotnet test "$2" -nologo 2>&1 | tee "$log"
  local line
  line=$(grep -oE 'Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "!! $1: no test summary (build or test host failure), see $log"
    broken+=("$1"); failed=$((failed + 1)); return
  fi
  read -r f p s < <(echo "$line" | grep -oE '[0-9]+' | tr '\n' ' ')
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

run_script() { # name command...: a script that ends with "N passed, N failed"
  local name=$1 log="out/test-$1.log"
  shift
  echo "== tests: $name"
  "$@" 2>&1 | tee "$log"
  local line
  line=$(tail -1 "$log" | grep -E '^[0-9]+ passed, [0-9]+ failed$')
  if [ -z "$line" ]; then
    echo "!! $name: no summary line, see $log"
    broken+=("$name"); failed=$((failed + 1)); return
  fi
  read -r p f < <(echo "$line" | grep -oE '[0-9]+' | tr '\n' ' ')
  passed=$((passed + p)); failed=$((failed + f))
}

echo "== host packages"
./build.sh --deps-only || broken+=("deps")
run_tests unit tests/HostOs.UnitTests
echo "== images"
if ./build.sh image/hostos.json qemu-tests/image/hostos-test.json; then
  # Tier 2, privileged: the runc-compatible front on this host (namespaces, mounts,
  # pivot_root, exec) in the cgroup v2 hierarchy a hybrid host still mounts.
  if [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/unified/cgroup.procs ]; then
    HOSTOS_CGROUP_ROOT=/sys/fs/cgroup/unified RECEIVER="$PWD/out/publish/hostos-guestcheck/hostos-guestcheck" \
      run_script host-lifecycle sh qemu-tests/lifecycle-compare.sh "$PWD/out/publish/hostos-runc/hostos-runc"
  elif [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/cgroup.procs ]; then
    RECEIVER="$PWD/out/publish/hostos-guestcheck/hostos-guestcheck" \
      run_script host-lifecycle sh qemu-tests/lifecycle-compare.sh "$PWD/out/publish/hostos-runc/hostos-runc"
  else
    echo "== host lifecycle skipped: needs root and a cgroup v2 hierarchy"; skipped=$((skipped + 1))
  fi
  run_tests qemu qemu-tests/HostOs.QemuTests
else
  echo "!! build.sh failed: QEMU tests not run"
  broken+=("build"); failed=$((failed + 1))
fi
[ ${#broken[@]} -eq 0 ] || echo "broken steps: ${broken[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#broken[@]} -eq 0 ]
