#!/usr/bin/env bash
# Builds HostOS and boots it in QEMU exactly as a cloud VM boots it: OVMF (UEFI) ->
# systemd-boot -> HostOS, console on this terminal. Quit QEMU with Ctrl-A then X;
# from another terminal, a clean ACPI power-off: see README.
#   ./run.sh            build, then boot a fresh copy of out/hostos/disk.img
#   ./run.sh --keep     boot the copy left by the last run (state and boot entries kept)
# HOSTOS_ACCEL=kvm only on machines where KVM guests work (not ours: TCG is the default).
set -euo pipefail
cd "$(dirname "$0")"
keep=0
[ "${1:-}" = "--keep" ] && keep=1
./build.sh image/hostos.json
mkdir -p out/run
if [ $keep -eq 0 ] || [ ! -f out/run/disk.img ]; then
  cp --sparse=always out/hostos/disk.img out/run/disk.img
  cp /usr/share/OVMF/OVMF_VARS_4M.fd out/run/vars.fd
  cat /proc/sys/kernel/random/uuid > out/run/uuid   # the VM's SMBIOS UUID, as a cloud gives one
fi
port="${HOSTOS_WEB_PORT:-8080}"
echo "== booting HostOS (TCG unless HOSTOS_ACCEL is set); Ctrl-A X quits; QMP on out/run/qmp.sock"
echo "== the demo container's page, once 'service web ready' shows: curl http://127.0.0.1:$port/"

# TCG runs both vCPUs on one host thread (thread=single): QEMU 7.2's multi-threaded TCG
# left guests in soft lockups here (docs/testing.md).
accel="${HOSTOS_ACCEL:-tcg}"; [ "$accel" = tcg ] && accel="tcg,thread=single"
exec qemu-system-x86_64 -machine q35 -accel "$accel" -m 1024 -smp 2 \
  -nodefaults -display none -vga none \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive if=pflash,format=raw,unit=1,file=out/run/vars.fd \
  -drive if=virtio,format=raw,file=out/run/disk.img \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8080" -device virtio-net-pci,netdev=net0 \
  -chardev stdio,id=console,mux=on,signal=off -serial chardev:console -mon chardev=console \
  -uuid "$(cat out/run/uuid)" \
  -qmp unix:out/run/qmp.sock,server=on,wait=off
