#!/usr/bin/env bash
# Delta payloads (issue 5) against zstd --patch-from and bsdiff, on one pair of
# consecutive images built here, in the same run: sizes, time and peak memory to create
# and to apply, and apply time against a plain dd of the same bytes: on the build host,
# then in a booted HostOS VM (bench/apply_vm.py: the same payloads applied to its inactive
# slot by its own updater, against dd of the same root to the same slot).
#   bench/delta.sh            # prints a table; the README has the latest one
# The pair: out/hostos (image/hostos.json) and out/hostos-next, the same definition one
# patch version later with busybox added and a changed file (what a small update does to
# a root: new files, changed metadata, everything else where it was or moved).
set -euo pipefail
cd "$(dirname "$0")/.."
work=out/bench-delta
rm -rf "$work" && mkdir -p "$work"
cat > "$work/next.json" <<'JSON'
{
  "extends": "../../image/hostos.json",
  "name": "hostos-next",
  "version": "0.1.1",
  "packages": [ { "name": "busybox-static", "files": ["/bin/busybox"] } ],
  "files": [ { "target": "/etc/hostos-release-notes", "content": "0.1.1: busybox in the root\n" } ]
}
JSON
./build.sh image/hostos.json "$work/next.json" bench/image/hostos-bench.json > "$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
# After build.sh, which fetches the package lists a fresh machine lacks.
command -v bsdiff > /dev/null || { echo "== installing bsdiff"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q bsdiff > /dev/null; }
dotnet publish src/HostOs.Updater -c Release -o out/publish/hostos-updater -nologo -v quiet -p:DebugType=none -p:DebugSymbols=false > /dev/null
U=out/publish/hostos-updater/hostos-updater
old=out/hostos/root.img new=out/hostos-next/root.img
$U keygen --out "$work/keys" > /dev/null

measure() { # label command... -> "seconds peakKB" into $work/LABEL.time
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$label.time" "$@" > "$work/$label.out" 2>&1 || { cat "$work/$label.out"; exit 1; }
}
measure full   $U payload create --to out/hostos-next --key "$work/keys/hostos-update.key" --out "$work/full.hup"
measure delta  $U payload create --to out/hostos-next --from out/hostos --key "$work/keys/hostos-update.key" --out "$work/delta.hup"
measure zstd   zstd -q -f --ultra -22 --long=27 --patch-from="$old" "$new" -o "$work/zstd.patch"
measure bsdiff bsdiff "$old" "$new" "$work/bsdiff.patch"
# Apply: the delta onto a copy of nothing (the target slot), the source read from $old.
measure apply  $U payload apply "$work/delta.hup" --target "$work/target.img" --boot-dir "$work/boot" --from out/hostos --trust "$work/keys"
cmp "$work/target.img" "$new"
measure zstdapply zstd -q -f -d --long=27 --patch-from="$old" "$work/zstd.patch" -o "$work/zstd-target.img"
measure dd     dd if="$new" of="$work/dd.img" bs=1M conv=fsync status=none

size() { stat -c %s "$1"; }
t() { cut -d' ' -f1 "$work/$1.time"; }
m() { cut -d' ' -f2 "$work/$1.time"; }
printf '%s\n' "images: $old ($(size $old) bytes, 0.1.0) -> $new ($(size $new) bytes, 0.1.1)"
printf '%-28s %12s %9s %10s\n' "" "bytes" "seconds" "peak MB"
printf '%-28s %12s %9s %10s\n' "hostos full payload" "$(size $work/full.hup)" "$(t full)" "$(( $(m full) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "hostos delta payload" "$(size $work/delta.hup)" "$(t delta)" "$(( $(m delta) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "zstd --patch-from -22 --long" "$(size $work/zstd.patch)" "$(t zstd)" "$(( $(m zstd) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "bsdiff" "$(size $work/bsdiff.patch)" "$(t bsdiff)" "$(( $(m bsdiff) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "apply hostos delta" "" "$(t apply)" "$(( $(m apply) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "apply zstd patch" "" "$(t zstdapply)" "$(( $(m zstdapply) / 1024 ))"
printf '%-28s %12s %9s %10s\n' "dd of the new root" "" "$(t dd)" "$(( $(m dd) / 1024 ))"
echo "note: our payloads also carry the kernel and initramfs (copied from the running version when unchanged, else zstd, patched against the old one when smaller); zstd and bsdiff patch the root image only."
python3 - "$work" <<'PY'
import os, sys
w = sys.argv[1]
def size(p): return os.path.getsize(os.path.join(w, p))
ratio = size("delta.hup") / size("zstd.patch")
print(f"delta / zstd --patch-from: {ratio:.2f}x (target <= 1.0, boot files included in ours)")
t = lambda n: float(open(os.path.join(w, n + ".time")).read().split()[0])
print(f"apply / dd on the build host: {t('apply') / max(t('dd'), 0.01):.2f}x")
PY
# 5 rounds: dd's first one in a fresh VM is always slow (0.74-0.83 s against ~0.58); the median of 5 is steadier than of 3.
python3 bench/apply_vm.py "$work"
