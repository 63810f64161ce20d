#!/usr/bin/env bash
# Delta payloads (issue 5) against zstd --patch-from and bsdiff, on one pair of
# consecutive images built here, in the same run: sizes, time and peak memory to create
# and to apply, and apply time against a plain dd of the same bytes: on the build host,
# then in a booted HostOS VM (bench/apply_vm.py: the VM running the pair's first image
# updates itself to the second, by the command line and by its update daemon, against dd
# of the same bytes to the same places).
#   bench/delta.sh            # prints a table; the README has the latest one
# The pair: out/hostos-bench (bench/image/hostos-bench.json, 0.1.0: the shipped image with
# the test tools and crun, which the VM boots) and out/hostos-bench-next, the same definition
# one patch version later with tini added and a changed file (what a small update does to
# a root: new files, changed metadata, everything else where it was or moved). Until
# 2026-12-02's last change the pair was the shipped image and its next version, and the VM applied it to
# a slot from a source root on a disk of its own: its daemon could not take that update.
# The payloads are signed with the key the images trust (build.sh's) and published in a
# repository (out/bench-delta/repo, channel "bench"), which the VM reads from a disk.
set -euo pipefail
cd "$(dirname "$0")/.."
work=out/bench-delta
rm -rf "$work" && mkdir -p "$work"
cat > "$work/next.json" <<'JSON'
{
  "extends": "../../bench/image/hostos-bench.json",
  "name": "hostos-bench-next",
  "version": "0.1.1",
  "packages": [ { "name": "tini", "files": ["/usr/bin/tini-static"] } ],
  "files": [ { "target": "/etc/hostos-release-notes", "content": "0.1.1: tini in the root\n" } ]
}
JSON
./build.sh bench/image/hostos-bench.json "$work/next.json" > "$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
# After build.sh, which fetches the package lists a fresh machine lacks.
command -v bsdiff > /dev/null || { echo "== installing bsdiff"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q bsdiff > /dev/null; }
dotnet publish src/HostOs.Updater -c Release -o out/publish/hostos-updater -nologo -v quiet -p:DebugType=none -p:DebugSymbols=false > /dev/null
U=out/publish/hostos-updater/hostos-updater
old=out/hostos-bench/root.img new=out/hostos-bench-next/root.img
key="${HOSTOS_UPDATE_KEY:-out/keys/hostos-update.key}" # build.sh's: the images trust it (out/update-keys)
repo=$work/repo full=$work/repo/payloads/0.1.1-full.hup delta=$work/repo/payloads/0.1.0-0.1.1.hup
mkdir -p "$repo/payloads"

measure() { # label command... -> "seconds peakKB" into $work/LABEL.time
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$label.time" "$@" > "$work/$label.out" 2>&1 || { cat "$work/$label.out"; exit 1; }
}
measure full   $U payload create --to out/hostos-bench-next --key "$key" --out "$full"
measure delta  $U payload create --to out/hostos-bench-next --from out/hostos-bench --key "$key" --out "$delta"
$U repo publish --dir "$repo" --channel bench --key "$key" > /dev/null
measure zstd   zstd -q -f --ultra -22 --long=27 --patch-from="$old" "$new" -o "$work/zstd.patch"
measure bsdiff bsdiff "$old" "$new" "$work/bsdiff.patch"
# Apply: the delta onto a copy of nothing (the target slot), the source read from $old.
measure apply  $U payload apply "$delta" --target "$work/target.img" --boot-dir "$work/boot" --from out/hostos-bench --trust out/update-keys
cmp "$work/target.img" "$new"
measure zstdapply zstd -q -f -d --long=27 --patch-from="$old" "$work/zstd.patch" -o "$work/zstd-target.img"
measure dd     dd if="$new" of="$work/dd.img" bs=1M conv=fsync status=none

size() { stat -c %s "$1"; }
t() { cut -d' ' -f1 "$work/$1.time"; }
m() { cut -d' ' -f2 "$work/$1.time"; }
printf '%s\n' "images: $old ($(size $old) bytes, 0.1.0) -> $new ($(size $new) bytes, 0.1.1)"
printf '%-28s %12s %9s %10s\n' "" "bytes" "seconds" "peak MB"
printf '%-28s %12s %9s %10s\n' "hostos full payload" "$(size $full)" "$(t full)" "$(( $(m full) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "hostos delta payload" "$(size $delta)" "$(t delta)" "$(( $(m delta) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "zstd --patch-from -22 --long" "$(size $work/zstd.patch)" "$(t zstd)" "$(( $(m zstd) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "bsdiff" "$(size $work/bsdiff.patch)" "$(t bsdiff)" "$(( $(m bsdiff) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "apply hostos delta" "" "$(t apply)" "$(( $(m apply) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "apply zstd patch" "" "$(t zstdapply)" "$(( $(m zstdapply) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "dd of the new root" "" "$(t dd)" "$(( $(m dd) / 1024 ))"
echo "note: our payloads also carry the kernel and initramfs (copied from the running version when unchanged, else zstd, patched against the old one when smaller); zstd and bsdiff patch the root image only."
python3 - "$work" "$delta" <<'PY'
import os, sys
w = sys.argv[1]
ratio = os.path.getsize(sys.argv[2]) / os.path.getsize(os.path.join(w, "zstd.patch"))
print(f"delta / zstd --patch-from: {ratio:.2f}x (target <= 1.0, boot files included in ours)")
t = lambda n: float(open(os.path.join(w, n + ".time")).read().split()[0])
print(f"apply / dd on the build host: {t('apply') / max(t('dd'), 0.01):.2f}x")
PY
# 5 rounds: dd's first one in a fresh VM is always slow (0.74-0.83 s against ~0.58); the median of 5 is steadier than of 3.
python3 bench/apply_vm.py "$work"
