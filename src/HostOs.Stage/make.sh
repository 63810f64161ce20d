#!/usr/bin/env bash
# Builds hostos-stage (Stage.cs against CoreLib.cs, no .NET runtime) into OUT_DIR: the C#
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
dotnet "$csc" -nologo -noconfig -nostdlib -runtimemetadataversion:v4.0.30319 -unsafe -optimize+ -deterministic \
  -warnaserror -t:library -out:"$work/hostos-stage.dll" "$here/CoreLib.cs" "$here/Stage.cs"
"$ilc" "$work/hostos-stage.dll" -o "$work/hostos-stage.o" --systemmodule:hostos-stage --targetos:linux --targetarch:x64 \
  -O --nativelib --directpinvoke:libc
gcc -static-pie -o "$out/hostos-stage" "$work/hostos-stage.o" -Wl,--gc-sections -s
ls -l "$out/hostos-stage"
