#!/usr/bin/env bash
# Builds HostOS disk images on a fresh Debian 12 machine: installs the host tools it
# needs, publishes the NativeAOT binaries, and assembles each image definition given
# (default: image/hostos.json) into out/<name>/disk.img.
#   ./build.sh                                   # out/hostos/disk.img
#   ./build.sh image/hostos.json qemu-tests/image/hostos-test.json
#   ./build.sh --series 3                        # also out/hostos-v1..v3, payloads between them, out/repo
#   ./build.sh --series 3 --broken               # the same, the last version failing its health check on purpose
set -euo pipefail
cd "$(dirname "$0")"
deps_only=0 series=0 broken=0
if [ "${1:-}" = "--deps-only" ]; then deps_only=1; shift; fi
if [ "${1:-}" = "--series" ]; then series="${2:?--series needs a number}"; shift 2; fi
if [ "${1:-}" = "--broken" ]; then broken=1; shift; fi

# Host tools, from Debian's archive only. Installed when missing; never the kernel
# (that one is fetched with apt-get download and unpacked, never installed into /boot).
HOST_PACKAGES=(qemu-system-x86 ovmf systemd-boot-efi erofs-utils gdisk dosfstools mtools
               e2fsprogs kmod busybox-static binutils gcc lld libc6-dev cpio zstd python3
               runc docker-registry apache2-utils openssl cryptsetup-bin nftables)
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
# The native stage (C# without the .NET runtime, src/HostOs.Stage), beside the binaries
# that start containers from out/publish (hostos-runc, the guest checker), and in images.
echo "== building hostos-stage (NativeAOT, no runtime)"
src/HostOs.Stage/make.sh out/publish/hostos-stage
cp out/publish/hostos-stage/hostos-stage out/publish/hostos-runc/
publish src/HostOs.Ctl hostctl
publish src/HostOs.ImageTool hostos-images
publish src/HostOs.Updater hostos-updater
# The in-guest checker goes only into the test image (qemu-tests/image/hostos-test.json).
publish tests/HostOs.GuestCheck hostos-guestcheck
cp out/publish/hostos-stage/hostos-stage out/publish/hostos-guestcheck/
publish tests/HostOs.HostedDemo hostos-hosted-demo

# The update signing key (docs/updates.md): HOSTOS_UPDATE_KEY names one; otherwise a
# development key is made once per checkout in out/keys. Its public half goes into every
# image (/usr/lib/hostos/update-keys), so machines trust what this checkout signs.
update_key="${HOSTOS_UPDATE_KEY:-out/keys/hostos-update.key}"
if [ ! -f "$update_key" ]; then
  echo "== making a development update signing key"
  out/publish/hostos-updater/hostos-updater keygen --out "$(dirname "$update_key")" --name "$(basename "$update_key" .key)"
fi
mkdir -p out/update-keys
cp "${update_key%.key}.pub" out/update-keys/release.pub

echo "== building the image builder"
dotnet build src/HostOs.ImageBuilder -c Release -nologo -v quiet -o out/imagebuilder
definitions=("$@")
[ ${#definitions[@]} -gt 0 ] || definitions=(image/hostos.json)
for def in "${definitions[@]}"; do
  echo "== image $def"
  dotnet out/imagebuilder/hostos-imagebuilder.dll build "$def"
done

# --series N: N consecutive versions of image/hostos.json (0.1.1 .. 0.1.N, each with a
# file that says which it is), a full payload of each, a delta between each two, and an
# update repository in out/repo (channel "stable") that any HTTP server can serve.
if [ "$series" -gt 0 ]; then
  rm -rf out/series out/repo && mkdir -p out/series out/repo/payloads
  U=out/publish/hostos-updater/hostos-updater
  for i in $(seq 1 "$series"); do
    health=""
    if [ "$broken" = 1 ] && [ "$i" = "$series" ]; then
      # A health check that always fails (an unknown hostctl command exits non-zero): the
      # machine tries this version three times, then falls back (docs/updates.md).
      health=', "health": { "deadlineSeconds": 20, "checks": [ { "name": "broken-on-purpose", "exec": ["/usr/bin/hostctl", "broken-on-purpose"] } ] }'
    fi
    cat > "out/series/v$i.json" <<JSON
{ "extends": "../../image/hostos.json", "name": "hostos-v$i", "version": "0.1.$i",
  "files": [ { "target": "/etc/hostos-series", "content": "series image $i\n" } ]$health }
JSON
    echo "== series image 0.1.$i"
    dotnet out/imagebuilder/hostos-imagebuilder.dll build "out/series/v$i.json"
    $U payload create --to "out/hostos-v$i" --key "$update_key" --out "out/repo/payloads/0.1.$i-full.hup"
    if [ "$i" -gt 1 ]; then
      $U payload create --to "out/hostos-v$i" --from "out/hostos-v$((i - 1))" --key "$update_key" --out "out/repo/payloads/0.1.$((i - 1))-0.1.$i.hup"
    fi
  done
  $U repo publish --dir out/repo --channel stable --key "$update_key"
fi
