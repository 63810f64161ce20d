#!/usr/bin/env python3
"""Distinct instructions that hostos-runc executes, by where they live.

Under QEMU's TCG every new process's code is translated again (ASLR puts it at new
addresses), so what a short-lived process costs there is close to how much distinct code it
runs, not how many instructions. This count is exact and repeatable on the build host, where
timing under TCG drifts by tens of percent (docs/containers.md, "Counting instead of timing").

Usage (root, after ./build.sh): python3 bench/distinct-instructions.py [--top N]
Publishes hostos-runc with its symbols to a temporary directory, runs `--version`, `run` of
/bin/true and `exec` of /bin/true into a running container under valgrind's callgrind, and
prints each command's distinct instruction addresses grouped by symbol: the process start
(glibc, the .NET runtime and its GC), CoreLib, our code, System.Text.Json, the rest; and
how many instructions ran in all (a loop counts once in the first figure, every time here).
"""
import argparse
import bisect
import collections
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# valgrind loads a static PIE at this base; it names the binary for part of its text (file
# addresses) and leaves the rest unnamed (loaded addresses).
VALGRIND_PIE_BASE = 0x108000


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_valgrind():
    if shutil.which("valgrind"):
        return
    run(["apt-get", "install", "-y", "-q", "valgrind"], stdout=subprocess.DEVNULL)


def cgroup_root():
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            return root
    sys.exit("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")


def symbols(binary):
    out = run(["nm", "-n", "-C", binary], capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in ("t", "T", "w", "W"):
            syms.append((int(parts[0], 16), parts[2]))
    return [s[0] for s in syms], [s[1] for s in syms]


def distinct(callgrind_out):
    """Addresses with a cost of their own, per object (the line after calls= is the call's
    inclusive cost at the call site, not an instruction of its own)."""
    addrs = collections.defaultdict(set)
    ob, after_call, executed = None, False, 0
    with open(callgrind_out, errors="replace") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                executed = int(line.split()[1])
            elif line.startswith("ob="):
                ob = line[3:].strip()
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("0x"):
                if not after_call:
                    addrs[ob].add(int(line.split()[0], 16))
                after_call = False
            else:
                after_call = False
    return addrs, executed


GROUPS = [
    ("S_P_CoreLib_", "CoreLib"), ("String__", "CoreLib"), ("System_Text_Json", "System.Text.Json"),
    ("HostOs_", "ours"), ("hostos_runc", "ours"), ("System_", "other managed"),
    ("S_P_", "other managed"),
]


def group(name):
    for prefix, g in GROUPS:
        if name.startswith(prefix):
            return g
    return "native: glibc, the .NET runtime, its GC"


def report(title, callgrind_out, keys, names, top):
    addrs, executed = distinct(callgrind_out)
    by_symbol = collections.Counter()
    total = 0
    for ob, found in addrs.items():
        total += len(found)
        base = VALGRIND_PIE_BASE if ob == "???" else 0
        for a in found:
            i = bisect.bisect_right(keys, a - base) - 1
            by_symbol[names[i] if i >= 0 else "?"] += 1
    groups = collections.Counter()
    for name, n in by_symbol.items():
        groups[group(name)] += n
    print(f"{title}: {total} distinct instructions ({executed} executed)")
    for g, n in groups.most_common():
        print(f"    {n:7d}  {g}")
    if top:
        for name, n in by_symbol.most_common(top):
            print(f"        {n:6d}  {name[:120]}")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=0, help="also list the N symbols with the most distinct instructions")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (run and exec create namespaces and cgroups)")
    stage = os.path.join(ROOT, "out/publish/hostos-stage/hostos-stage")
    guestcheck = os.path.join(ROOT, "out/publish/hostos-guestcheck/hostos-guestcheck")
    for needed in (stage, guestcheck):
        if not os.path.exists(needed):
            sys.exit(f"{needed} is missing: run ./build.sh first")
    ensure_valgrind()
    env = dict(os.environ, HOSTOS_CGROUP_ROOT=cgroup_root())
    with tempfile.TemporaryDirectory(prefix="hostos-count-") as tmp:
        pub = os.path.join(tmp, "publish")
        run(["dotnet", "publish", os.path.join(ROOT, "src/HostOs.Runc"), "-c", "Release", "-r", "linux-x64",
             "-o", pub, "-p:StripSymbols=false"], stdout=subprocess.DEVNULL)
        # valgrind gives up on this binary's DWARF: it runs a stripped copy, nm reads the original.
        runc = os.path.join(tmp, "hostos-runc")
        run(["strip", "-o", runc, os.path.join(pub, "hostos-runc")])
        shutil.copy(stage, os.path.join(tmp, "hostos-stage"))
        keys, names = symbols(os.path.join(pub, "hostos-runc"))
        state = os.path.join(tmp, "state")
        for name, argv in (("true", ["true"]), ("sleep", ["sleep", "600"])):
            run([guestcheck, "make-bundle", os.path.join(tmp, name), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def counted(tag, *argv):
            out = os.path.join(tmp, tag + ".cg")
            run(["valgrind", "-q", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no", "--compress-pos=no",
                 f"--callgrind-out-file={out}", runc, *argv], env=env, stdout=subprocess.DEVNULL)
            return out

        print("hostos-runc, distinct instructions executed (callgrind; what QEMU's TCG translates per process)")
        report("--version", counted("version", "--version"), keys, names, args.top)
        report("run /bin/true", counted("run", "--root", state, "run", "--bundle", os.path.join(tmp, "true"), "count-run"),
               keys, names, args.top)
        run([runc, "--root", state, "run", "-d", "--bundle", os.path.join(tmp, "sleep"), "count-exec"], env=env)
        try:
            report("exec /bin/true", counted("exec", "--root", state, "exec", "count-exec", "true"), keys, names, args.top)
        finally:
            run([runc, "--root", state, "delete", "--force", "count-exec"], env=env)


if __name__ == "__main__":
    main()
