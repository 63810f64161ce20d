#!/usr/bin/env bash
# Builds HostOS disk images on a fresh Debian 12 machine: installs the host tools it
# needs, publishes the NativeAOT binaries, and assembles each image definition given
# (default: image/hostos.json) into out/<name>/disk.img.
#   ./build.sh                                   # out/hostos/disk.img
#   ./build.sh image/hostos.json qemu-tests/image/hostos-test.json
set -euo pipefail
cd "$(dirname "$0")"
deps_only=0
if [ "${1:-}" = "--deps-only" ]; then deps_only=1; shift; fi

# Host tools, from Debian's archive only. Installed when missing; never the kernel
# (that one is fetched with apt-get download and unpacked, never installed into /boot).
HOST_PACKAGES=(qemu-system-x86 ovmf systemd-boot-efi erofs-utils gdisk dosfstools mtools
               e2fsprogs kmod busybox-static binutils cpio zstd python3
               runc docker-registry apache2-utils openssl)
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ! -d /var/lib/apt/lists ] || [ -z "$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null | head -1)" ]; then
  echo "== installing host packages: ${missing[*]:-(none, refreshing lists)}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ $deps_only -eq 0 ] || exit 0

publish() { # project output-name
  echo "== publishing $2 (NativeAOT)"
  dotnet publish "$1" -c Release -o "out/publish/$2" -nologo -v quiet -p:DebugType=none -p:DebugSymbols=false
  ls -l "out/publish/$2/$2"
}
publish src/HostOs.Init hostos-init
publish src/HostOs.Runc hostos-runc
publish src/HostOs.Ctl hostctl
publish src/HostOs.ImageTool hostos-images
# The in-guest checker goes only into the test image (qemu-tests/image/hostos-test.json).
publish tests/HostOs.GuestCheck hostos-guestcheck
publish tests/HostOs.HostedDemo hostos-hosted-demo

echo "== building the image builder"
dotnet build src/HostOs.ImageBuilder -c Release -nologo -v quiet -o out/imagebuilder
definitions=("$@")
[ ${#definitions[@]} -gt 0 ] || definitions=(image/hostos.json)
for def in "${definitions[@]}"; do
  echo "== image $def"
  dotnet out/imagebuilder/hostos-imagebuilder.dll build "$def"
done
