#!/usr/bin/env python3
"""Apply throughput in the VM (issue 5): a booted HostOS running the pair's first image
(out/hostos-bench, 0.1.0, which has a shell) updates itself to the second (0.1.1) as a
machine does, into its inactive slot and its ESP, against a plain `dd` of the same bytes
to the same places (the new root to the slot, its kernel and initramfs to a directory on
the ESP), same VM, same run. bench/delta.sh made the payloads and their repository.

The repository (signed index, channel "bench", the delta from 0.1.0 and the full payload),
the new root image and the new build's manifest and boot files sit on an EROFS disk
attached read-only (/dev/vdb). Each round, in turn:
  dd            the new root to the slot, kernel and initramfs to the ESP (mounted
                beforehand, conv=fsync);
  check         `hostos-updater image verify` of the slot dd wrote (its dm-verity tree
                rebuilt on every core, as an apply's check rebuilds it) and of the new kernel
                and initramfs by their SHA-256: what an apply must check, with nothing
                written or decompressed, in a freshly started process;
  full (CLI)    `hostos-updater update --payload FULL`: a freshly started updater, the
                whole machine path (lock, slots found, ESP mounted, entry written);
  delta (CLI)   `hostos-updater update --server REPO --channel bench`: the same with the
                index read and the delta chosen, applied from the running slot;
  delta (daemon) `hostctl update apply --server REPO --channel bench`: the update daemon,
                running since the boot, installs the same delta (hostctl's start and the
                bus included; the first round is its first install since the boot).
Before each timed run but the check the page cache is dropped and the slot's first block
spoiled, so that the applier cannot keep any verified progress (docs/updates.md "Resume
from verified progress") and writes every byte, as dd does. Each is checked afterwards
(SHA-256 of the slot's first SIZE bytes). Times come from the guest's /proc/uptime around
each run; the median of ROUNDS is reported.
Usage: bench/apply_vm.py WORK [--rounds N]   (WORK: bench/delta.sh's out/bench-delta)
"""
import hashlib, json, os, shutil, statistics, subprocess, sys

from vm import ROOT, Vm

SLOT = "/dev/vda3"  # root-b: the inactive slot of a first boot
ESP = "/dev/vda1"
U = "/usr/lib/hostos/updater/hostos-updater"


def main():
    work = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    new_build = os.path.join(ROOT, "out", "hostos-bench-next")
    new = os.path.join(new_build, "root.img")
    version = lambda build: json.load(open(os.path.join(ROOT, "out", build, "manifest.json")))["version"]
    old_v, new_v = version("hostos-bench"), version("hostos-bench-next")
    disk_dir = os.path.join(work, "vm-disk")
    shutil.rmtree(disk_dir, ignore_errors=True)
    shutil.copytree(os.path.join(work, "repo"), os.path.join(disk_dir, "repo"), copy_function=os.link)
    os.makedirs(os.path.join(disk_dir, "next"))  # the new build's manifest: image verify's dm-verity parameters
    os.link(os.path.join(new_build, "manifest.json"), os.path.join(disk_dir, "next", "manifest.json"))
    os.link(new, os.path.join(disk_dir, "new-root.img"))
    for f in ("vmlinuz", "initrd.img"):
        os.link(os.path.join(new_build, f), os.path.join(disk_dir, "new-" + f))
    disk = os.path.join(work, "vm-disk.erofs")
    subprocess.run(["mkfs.erofs", "--quiet", disk, disk_dir], check=True)
    size = os.path.getsize(new)
    with open(new, "rb") as f:
        want = hashlib.file_digest(f, "sha256").hexdigest()
    boot_sha = {}
    for f in ("vmlinuz", "initrd.img"):
        with open(os.path.join(new_build, f), "rb") as fh:
            boot_sha[f] = hashlib.file_digest(fh, "sha256").hexdigest()

    with Vm("hostos-bench", extra_disks=[disk]) as sh:
        sh.check("mkdir -p /tmp/p /tmp/esp && mount -t erofs -o ro /dev/vdb /tmp/p")
        # The new build with its root in the slot: what the check verifies after dd.
        sh.check(f"mkdir -p /tmp/next && ln -s /tmp/p/next/manifest.json /tmp/next/ && ln -s {SLOT} /tmp/next/root.img")
        blocks = int(sh.check(f"cat /sys/class/block/{os.path.basename(SLOT)}/size"))
        if blocks * 512 < size:
            raise SystemExit(f"{SLOT} holds {blocks * 512} bytes, less than the {size} of the target")
        # An update waits until the running version's boot is blessed (its entry no longer counted).
        sh.check(f"ok=; for i in $(seq 60); do if {U} status | grep -qF ': {old_v}, slot a, blessed'; then ok=1; break; fi; sleep 1; done; "
                 f"[ -n \"$ok\" ] || {{ {U} status; false; }}", timeout=120)
        up = "cut -d' ' -f1 /proc/uptime"
        runs = {
            # The same bytes as an update writes, to the same places: the root to the slot, kernel and initramfs to the ESP.
            "dd": f"dd if=/tmp/p/new-root.img of={SLOT} bs=1M conv=fsync 2>/dev/null && mkdir /tmp/esp/bench-dd && "
                  f"dd if=/tmp/p/new-vmlinuz of=/tmp/esp/bench-dd/vmlinuz bs=1M conv=fsync 2>/dev/null && "
                  f"dd if=/tmp/p/new-initrd.img of=/tmp/esp/bench-dd/initrd.img bs=1M conv=fsync 2>/dev/null",
            # The check alone, of what dd just wrote: the near floor of a freshly started apply that checks what it writes.
            "check": f"{U} image verify /tmp/next --file /tmp/p/new-vmlinuz={boot_sha['vmlinuz']} "
                     f"--file /tmp/p/new-initrd.img={boot_sha['initrd.img']} >/dev/null",
            "full": f"{U} update --payload /tmp/p/repo/payloads/{new_v}-full.hup >/dev/null",
            "delta": f"{U} update --server /tmp/p/repo --channel bench >/dev/null",
            # hostctl's lines stamped as they come (awk reads the clock without a fork): the daemon's own
            # install runs from its answer ("update started") to its end ("installed ..."), as a timer's would.
            "daemon": "(set -o pipefail; hostctl update apply --server /tmp/p/repo --channel bench | "
                      "awk '/^update started|^installed / { getline u < \"/proc/uptime\"; close(\"/proc/uptime\"); "
                      "split(u, t, \" \"); print \"stamp\", t[1] }')",
        }
        # Every write starts from the ESP of a machine that never had the new version (the 64 MiB ESP
        # holds two versions' boot files, not three); dd's ESP is mounted around its timed run (an update mounts its own).
        mount = f"mount -t vfat {ESP} /tmp/esp"
        forget = f"{mount} && rm -rf /tmp/esp/hostos/{new_v} /tmp/esp/loader/entries/hostos-{new_v}[.+]* && umount /tmp/esp"
        after = {"dd": "rm -rf /tmp/esp/bench-dd && umount /tmp/esp"}
        times = {k: [] for k in runs}
        install = []  # the daemon's install alone, without hostctl's start
        for _ in range(rounds):
            for name, cmd in runs.items():
                prepare = "" if name == "check" else (
                    f"{forget} && {mount + ' && ' if name == 'dd' else ''}dd if=/dev/urandom of={SLOT} bs=4096 count=1 conv=fsync 2>/dev/null && ")
                sh.check(f"{prepare}sync && echo 3 > /proc/sys/vm/drop_caches")
                # An apply that fails fails the bench here, by name, not at the hash check after it.
                out = sh.check(f"a=$({up}); {cmd} && b=$({up}) && echo $a $b", timeout=1200)
                a, b = map(float, out.split()[-2:])
                times[name].append(b - a)
                if name == "daemon":
                    stamps = [float(line.split()[1]) for line in out.splitlines() if line.startswith("stamp ")]
                    if len(stamps) != 2:
                        raise SystemExit(f"daemon: hostctl's output had {len(stamps)} of its two lines (update started, installed):\n{out}")
                    install.append(stamps[1] - stamps[0])
                if name in after:
                    sh.check(after[name])
                got = sh.check(f"head -c {size} {SLOT} | sha256sum").split()[0]
                if got != want:
                    raise SystemExit(f"{name}: the slot holds {got}, not the target {want}")
        # Every update wrote the new version's entry: the machine's own account of it.
        print(sh.check(f"{U} status").strip())
        times["install"] = install
        med = {k: statistics.median(v) for k, v in times.items()}
        mb = size / 1e6
        print(f"in the VM (TCG, {rounds} rounds, median; {old_v} running, {new_v} installed, slot {SLOT}, target {size} bytes, page cache dropped before each):")
        for name, label in [("dd", "dd of the same bytes"), ("check", "check alone (image verify)"), ("full", "full, CLI (update --payload)"),
                            ("delta", "delta, CLI (update)"), ("daemon", "delta, daemon (hostctl)"), ("install", "delta, daemon's install")]:
            print(f"  {label:30s} {med[name]:7.2f} s  {mb / med[name]:6.1f} MB/s   ({' '.join(f'{t:.2f}' for t in times[name])})")
        print(f"update / dd in the VM: full {med['full'] / med['dd']:.2f}x, delta {med['delta'] / med['dd']:.2f}x (CLI), "
              f"{med['daemon'] / med['dd']:.2f}x (daemon through hostctl), {med['install'] / med['dd']:.2f}x (the daemon's install) (target <= 1.2); "
              f"the check alone {med['check'] / med['dd']:.2f}x (the near floor of a freshly started update that checks what it writes)")


if __name__ == "__main__":
    main()
