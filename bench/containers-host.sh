#!/usr/bin/env bash
# Container start-to-exit on the build host itself (no emulation): hostos-runc against
# runc, same busybox bundle, same run. The host is cgroup v1 (hybrid): hostos-runc uses the
# unified hierarchy (HOSTOS_CGROUP_ROOT), runc its v1 controllers; crun refuses hybrid
# hosts, so it is compared in the VM only (bench/containers.py). Needs root and
# out/publish/hostos-runc (./build.sh). Usage: bench/containers-host.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
ours="$PWD/out/publish/hostos-runc/hostos-runc"
[ -x "$ours" ] || { echo "build first: ./build.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/proc" "$work/b/rootfs/dev"
cp "$(command -v busybox)" "$work/b/rootfs/bin/busybox"
ln -s busybox "$work/b/rootfs/bin/true"
cat >"$work/b/config.json" <<'JSON'
{ "ociVersion": "1.0.2", "root": { "path": "rootfs", "readonly": true }, "hostname": "bench",
  "process": { "args": ["true"], "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true,
    "capabilities": { "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"] } },
  "mounts": [ { "destination": "/proc", "type": "proc", "source": "proc" },
              { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"] } ],
  "linux": { "namespaces": [ { "type": "pid" }, { "type": "mount" }, { "type": "uts" }, { "type": "ipc" }, { "type": "network" } ] } }
JSON
export HOSTOS_CGROUP_ROOT=${HOSTOS_CGROUP_ROOT:-/sys/fs/cgroup/unified}
[ -f "$HOSTOS_CGROUP_ROOT/cgroup.procs" ] || HOSTOS_CGROUP_ROOT=/sys/fs/cgroup
per_run() { # name command...: ms per run
  local start end
  for i in 1 2 3; do "$@" w$i >/dev/null </dev/null; done
  start=$(date +%s%N)
  for i in $(seq "$runs"); do "$@" c$i >/dev/null </dev/null; done
  end=$(date +%s%N)
  echo $(( (end - start) / runs / 1000 ))
}
a=$(per_run "$ours" --root "$work/s1" run -b "$work/b")
b=$(per_run runc --root "$work/s2" run -b "$work/b")
echo "start-to-exit of /bin/true, $runs sequential runs each, on this host (no emulation)"
printf '  hostos-runc run   %6d.%03d ms per container\n' $((a / 1000)) $((a % 1000))
printf '  runc %-12s %6d.%03d ms per container\n' "$(runc --version | head -1 | awk '{print $3}')" $((b / 1000)) $((b % 1000))
echo "  ratio hostos-runc / runc: $(awk "BEGIN { printf \"%.2f\", $a / $b }")x"
