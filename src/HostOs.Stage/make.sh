#!/usr/bin/env bash
# Builds hostos-stage (Stage.cs against CoreLib.cs, no .NET runtime) and hostos-runc's front
# (RuncFront.cs, installed as /usr/bin/hostos-runc; out: hostos-runc-front) into OUT_DIR: the C#
# compiler of the installed SDK, then the NativeAOT compiler (ilc) of the ILCompiler package
# the SDK restored for our NativeAOT projects (the same version), then gcc links it as a
# static PIE against glibc. Usage: src/HostOs.Stage/make.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
sdk=$(dirname "$(dotnet --list-sdks | tail -1 | sed -E 's/^([^ ]+) \[(.*)\]$/\2\/\1/')/x")
csc="$sdk/Roslyn/bincore/csc.dll"
# The ILCompiler version the SDK picks for PublishAot, as restored for hostos-runc.
assets="$here/../HostOs.Runc/obj/project.assets.json"
[ -f "$assets" ] || dotnet restore "$here/../HostOs.Runc" -nologo -v quiet
version=$(grep -oE '"runtime\.linux-x64\.Microsoft\.DotNet\.ILCompiler/[^"]+"' "$assets" | head -1 | sed -E 's/.*\/([^"]+)"/\1/')
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
ilc="$packages/runtime.linux-x64.microsoft.dotnet.ilcompiler/$version/tools/ilc"
[ -x "$ilc" ] || { echo "make.sh: no ilc at $ilc (restore hostos-runc first)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build() { # NAME SOURCE
  dotnet "$csc" -nologo -noconfig -nostdlib -runtimemetadataversion:v4.0.30319 -unsafe -optimize+ -deterministic \
    -warnaserror -t:library -out:"$work/$1.dll" "$here/CoreLib.cs" "$here/$2"
  "$ilc" "$work/$1.dll" -o "$work/$1.o" --systemmodule:"$1" --targetos:linux --targetarch:x64 \
    -O --nativelib --directpinvoke:libc
  gcc -static-pie -o "$out/$1" "$work/$1.o" -Wl,--gc-sections -s
  ls -l "$out/$1"
}
build hostos-stage Stage.cs
build hostos-runc-front RuncFront.cs
