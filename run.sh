#!/usr/bin/env bash
# Builds HostOS and boots it in QEMU exactly as a cloud VM boots it: OVMF (UEFI) ->
# systemd-boot -> HostOS, console on this terminal. Quit QEMU with Ctrl-A then X;
# from another terminal, a clean ACPI power-off: see README.
#   ./run.sh            build, then boot a fresh copy of out/hostos/disk.img
#   ./run.sh --keep     boot the copy left by the last run (state and boot entries kept)
#   ./run.sh --updates  build a series of two versions (./build.sh --series 2), serve out/repo
#                       on 127.0.0.1:8000, boot 0.1.1 with its update daemon pointed there
#                       (look every minute, reboot by itself): it installs 0.1.2 and reboots
#                       into it. Then, from another terminal, ./build.sh --series 3 --broken
#                       publishes a 0.1.3 that fails its health check: the machine installs
#                       it, tries it three times and falls back to 0.1.2, which says why
#                       (hostctl update status on the console... see README, "Updates").
# HOSTOS_ACCEL=kvm only on machines where KVM guests work (not ours: TCG is the default).
#
# The demo: the system container "web" (baked into the image) on host port 8080, and an
# app container "hello" that the machine pulls on its first boot from a registry started
# here (Debian's docker-registry on 127.0.0.1, plain HTTP; the guest reaches it as
# 10.0.2.2), declared on a cloud-init style config drive, on host port 8081.
set -euo pipefail
cd "$(dirname "$0")"
keep=0 updates=0
[ "${1:-}" = "--keep" ] && keep=1
[ "${1:-}" = "--updates" ] && updates=1
disk=out/hostos/disk.img
if [ $updates -eq 1 ]; then
  ./build.sh --series 2 image/hostos.json
  disk=out/hostos-v1/disk.img
else
  ./build.sh image/hostos.json
fi
mkdir -p out/run
if [ $keep -eq 0 ] || [ ! -f out/run/disk.img ]; then
  cp --sparse=always "$disk" out/run/disk.img
  cp /usr/share/OVMF/OVMF_VARS_4M.fd out/run/vars.fd
  cat /proc/sys/kernel/random/uuid > out/run/uuid   # the VM's SMBIOS UUID, as a cloud gives one
fi
port="${HOSTOS_WEB_PORT:-8080}"
app_port="${HOSTOS_APP_PORT:-8081}"
registry_port="${HOSTOS_REGISTRY_PORT:-5000}"

# The demo registry, with the image's busybox layout pushed as hostos/busybox:demo.
rm -rf out/run/registry && mkdir -p out/run/registry
cat > out/run/registry/config.yml <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $PWD/out/run/registry/storage
http:
  addr: 127.0.0.1:$registry_port
YAML
docker-registry serve out/run/registry/config.yml > out/run/registry/log 2>&1 &
registry_pid=$!
update_pid=
trap 'kill $registry_pid $update_pid 2>/dev/null || true' EXIT
update_config=
if [ $updates -eq 1 ]; then
  update_port="${HOSTOS_UPDATE_PORT:-8000}"
  python3 -m http.server "$update_port" --bind 127.0.0.1 -d out/repo > out/run/update-server.log 2>&1 &
  update_pid=$!
  update_config=", \"update\": { \"server\": \"http://10.0.2.2:$update_port/\", \"checkIntervalMinutes\": 1, \"reboot\": \"automatic\" }"
fi
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$registry_port") 2>/dev/null && break; sleep 0.1; done
HOSTOS_IMAGE_STORE="$PWD/out/run/registry/push-store" HOSTOS_REGISTRIES="$PWD/out/run/registry/none.json" \
  out/publish/hostos-images/hostos-images push out/hostos/oci/busybox "127.0.0.1:$registry_port/hostos/busybox:demo" --insecure

# The config drive (FAT labelled cidata: user-data and meta-data, as cloud-init's NoCloud).
cat > out/run/user-data <<JSON
{ "registries": [ { "host": "10.0.2.2:$registry_port", "insecure": true } ],
  "apps": [ {
    "name": "hello",
    "image": "10.0.2.2:$registry_port/hostos/busybox:demo",
    "command": ["sh", "-c", "n=\$(cat /data/runs 2>/dev/null || echo 0); n=\$((n+1)); echo \$n > /data/runs; mkdir -p /srv; echo \"Hello from a HostOS app container (run \$n)\" > /srv/index.html; exec httpd -f -p 80 -h /srv"],
    "ports": [ { "host": 8081, "container": 80 } ],
    "volumes": [ { "name": "data", "target": "/data" } ],
    "resources": { "memoryMiB": 32, "pids": 32 },
    "health": { "type": "http", "port": 80 } } ]$update_config }
JSON
echo "instance-id: run-$(cat out/run/uuid)" > out/run/meta-data
rm -f out/run/cidata.img
mkfs.vfat -n cidata -C out/run/cidata.img 2048 > /dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i out/run/cidata.img out/run/user-data out/run/meta-data ::/

echo "== booting HostOS (TCG unless HOSTOS_ACCEL is set); Ctrl-A X quits; QMP on out/run/qmp.sock"
echo "== the system container's page, once 'service web ready' shows:  curl http://127.0.0.1:$port/"
echo "== the app container's page, once 'service hello ready' shows:   curl http://127.0.0.1:$app_port/"

# TCG runs both vCPUs on one host thread (thread=single): QEMU 7.2's multi-threaded TCG
# left guests in soft lockups here (docs/testing.md).
accel="${HOSTOS_ACCEL:-tcg}"; [ "$accel" = tcg ] && accel="tcg,thread=single"
qemu-system-x86_64 -machine q35 -accel "$accel" -m 1024 -smp 2 \
  -nodefaults -display none -vga none \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive if=pflash,format=raw,unit=1,file=out/run/vars.fd \
  -drive if=virtio,format=raw,file=out/run/disk.img \
  -drive if=virtio,format=raw,readonly=on,file=out/run/cidata.img \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8080,hostfwd=tcp:127.0.0.1:$app_port-:8081" -device virtio-net-pci,netdev=net0 \
  -chardev stdio,id=console,mux=on,signal=off -serial chardev:console -mon chardev=console \
  -uuid "$(cat out/run/uuid)" \
  -qmp unix:out/run/qmp.sock,server=on,wait=off
