#!/usr/bin/env python3
"""Apply throughput in the VM (issue 5): the payloads bench/delta.sh made, applied by the
updater inside a booted HostOS (out/hostos-bench, which has a shell) to its inactive slot,
against a plain `dd` of the same bytes (the target root to the same slot, its kernel and
initramfs to a boot directory on /tmp as the apply's), same VM, same run.

The payloads, the target root image and the source build's manifest and boot files sit on
an EROFS disk attached read-only (/dev/vdb); the source build's root is a disk of its own
(/dev/vdc), which the delta is applied from as a machine applies one from its running
slot: a block device, read around the page cache. (Until 2026-12-02 it was the root image
file on the EROFS disk, read through the page cache: the same time within this machine's
spread, 3.91 s against 3.96 s in one run.) Before each timed run the page cache is dropped and
the slot's first block spoiled, so that the applier cannot keep any verified progress
(docs/updates.md "Resume from verified progress") and writes every byte, as dd does.
Each is checked afterwards (SHA-256 of the slot's first SIZE bytes). Times come from the
guest's /proc/uptime around each run; the median of ROUNDS is reported.
A fourth run, right after dd's, times the check alone: `hostos-updater image verify` of the
slot dd wrote (its dm-verity tree rebuilt on every core, as an apply's check rebuilds it)
and of the new kernel and initramfs by their SHA-256, the bytes an apply must check. It
writes nothing and decompresses nothing: a freshly started apply that checks what it
writes does all of that and more (less only the digests it knows without hashing, of the
zero blocks it writes), so its ratio to dd is the near floor under a CLI apply's.
Usage: bench/apply_vm.py WORK [--rounds N]   (WORK: bench/delta.sh's out/bench-delta)
"""
import hashlib, os, shutil, statistics, subprocess, sys

from vm import ROOT, Vm

SLOT = "/dev/vda3"  # root-b: the inactive slot of a first boot


def main():
    work = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    src, new = os.path.join(ROOT, "out", "hostos"), os.path.join(ROOT, "out", "hostos-next", "root.img")
    disk_dir = os.path.join(work, "vm-disk")
    shutil.rmtree(disk_dir, ignore_errors=True)
    os.makedirs(os.path.join(disk_dir, "src"))
    for f in ("manifest.json", "vmlinuz", "initrd.img"):  # its root.img is a disk of its own
        os.link(os.path.join(src, f), os.path.join(disk_dir, "src", f))
    os.makedirs(os.path.join(disk_dir, "next"))  # the target build's manifest: image verify's dm-verity parameters
    os.link(os.path.join(ROOT, "out", "hostos-next", "manifest.json"), os.path.join(disk_dir, "next", "manifest.json"))
    for f in ("full.hup", "delta.hup"):
        os.link(os.path.join(work, f), os.path.join(disk_dir, f))
    os.link(new, os.path.join(disk_dir, "new-root.img"))
    for f in ("vmlinuz", "initrd.img"):
        os.link(os.path.join(ROOT, "out", "hostos-next", f), os.path.join(disk_dir, "new-" + f))
    shutil.copy(os.path.join(work, "keys", "hostos-update.pub"), disk_dir)
    disk = os.path.join(work, "vm-disk.erofs")
    subprocess.run(["mkfs.erofs", "--quiet", disk, disk_dir], check=True)
    size = os.path.getsize(new)
    with open(new, "rb") as f:
        want = hashlib.file_digest(f, "sha256").hexdigest()
    boot_sha = {}
    for f in ("vmlinuz", "initrd.img"):
        with open(os.path.join(ROOT, "out", "hostos-next", f), "rb") as fh:
            boot_sha[f] = hashlib.file_digest(fh, "sha256").hexdigest()

    with Vm("hostos-bench", extra_disks=[disk, os.path.join(src, "root.img")]) as sh:
        sh.check("mkdir -p /tmp/p && mount -t erofs -o ro /dev/vdb /tmp/p")
        # The source build as a machine has it: the root on a block device, the boot files in a directory.
        sh.check("mkdir -p /tmp/src && ln -s /tmp/p/src/manifest.json /tmp/p/src/vmlinuz /tmp/p/src/initrd.img /tmp/src/ && "
                 "ln -s /dev/vdc /tmp/src/root.img")
        # The target build with its root in the slot: what the check verifies after dd.
        sh.check(f"mkdir -p /tmp/next && ln -s /tmp/p/next/manifest.json /tmp/next/ && ln -s {SLOT} /tmp/next/root.img")
        blocks = int(sh.check(f"cat /sys/class/block/{os.path.basename(SLOT)}/size"))
        if blocks * 512 < size:
            raise SystemExit(f"{SLOT} holds {blocks * 512} bytes, less than the {size} of the target")
        up = "cut -d' ' -f1 /proc/uptime"
        u = "/usr/lib/hostos/updater/hostos-updater"
        runs = {
            # The same bytes as an apply writes: the root to the slot, kernel and initramfs to the boot directory.
            "dd": f"dd if=/tmp/p/new-root.img of={SLOT} bs=1M conv=fsync 2>/dev/null && mkdir /tmp/boot-dd && "
                  f"dd if=/tmp/p/new-vmlinuz of=/tmp/boot-dd/vmlinuz bs=1M conv=fsync 2>/dev/null && "
                  f"dd if=/tmp/p/new-initrd.img of=/tmp/boot-dd/initrd.img bs=1M conv=fsync 2>/dev/null",
            # The check alone, of what dd just wrote: the near floor of a CLI apply that checks what it writes.
            "check": f"{u} image verify /tmp/next --file /tmp/p/new-vmlinuz={boot_sha['vmlinuz']} "
                     f"--file /tmp/p/new-initrd.img={boot_sha['initrd.img']} >/dev/null",
            "full": f"{u} payload apply /tmp/p/full.hup --target {SLOT} --boot-dir /tmp/boot-full --trust /tmp/p/hostos-update.pub >/dev/null",
            "delta": f"{u} payload apply /tmp/p/delta.hup --target {SLOT} --boot-dir /tmp/boot-delta --from /tmp/src "
                     f"--trust /tmp/p/hostos-update.pub >/dev/null",
        }
        times = {k: [] for k in runs}
        for _ in range(rounds):
            for name, cmd in runs.items():
                spoil = "" if name == "check" else f"dd if=/dev/urandom of={SLOT} bs=4096 count=1 conv=fsync 2>/dev/null; rm -rf /tmp/boot-*; "
                sh.check(f"{spoil}sync; echo 3 > /proc/sys/vm/drop_caches")
                # An apply that fails fails the bench here, by name, not at the hash check after it.
                out = sh.check(f"a=$({up}); {cmd} && b=$({up}) && echo $a $b", timeout=1200)
                a, b = map(float, out.split()[-2:])
                times[name].append(b - a)
                got = sh.check(f"head -c {size} {SLOT} | sha256sum").split()[0]
                if got != want:
                    raise SystemExit(f"{name}: the slot holds {got}, not the target {want}")
        med = {k: statistics.median(v) for k, v in times.items()}
        mb = size / 1e6
        print(f"in the VM (TCG, {rounds} rounds, median; slot {SLOT}, target {size} bytes, page cache dropped before each):")
        for name, label in [("dd", "dd of the same bytes"), ("check", "check alone (image verify)"), ("full", "apply the full payload"),
                            ("delta", "apply the delta payload")]:
            print(f"  {label:28s} {med[name]:7.2f} s  {mb / med[name]:6.1f} MB/s   ({' '.join(f'{t:.2f}' for t in times[name])})")
        print(f"apply / dd in the VM: full {med['full'] / med['dd']:.2f}x, delta {med['delta'] / med['dd']:.2f}x (target <= 1.2); "
              f"the check alone {med['check'] / med['dd']:.2f}x (the near floor of a CLI apply that checks what it writes)")


if __name__ == "__main__":
    main()
