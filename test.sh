#!/usr/bin/env bash
# The whole HostOS test suite, in tiers: (1) unit and (2) privileged host tests
# (tests/HostOs.UnitTests; root-only ones skip for other users), then the images are
# built, then (3) QEMU tests boot them (qemu-tests/). Ends with "N passed, N failed".
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

echo "== host packages"
./build.sh --deps-only || broken+=("deps")
run_tests unit tests/HostOs.UnitTests
echo "== images"
if ./build.sh image/hostos.json qemu-tests/image/hostos-test.json; then
  run_tests qemu qemu-tests/HostOs.QemuTests
else
  echo "!! build.sh failed: QEMU tests not run"
  broken+=("build"); failed=$((failed + 1))
fi
[ ${#broken[@]} -eq 0 ] || echo "broken steps: ${broken[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#broken[@]} -eq 0 ]
