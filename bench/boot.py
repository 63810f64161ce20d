#!/usr/bin/env python3
"""Boot-to-ready benchmark, side by side in one run, under TCG (HOSTOS_ACCEL to change).

  floor   : the same Debian cloud kernel, direct boot, initramfs = busybox + an /init
            that mounts /proc and prints READY (the fastest possible userspace).
  hostos  : the same kernel, direct boot, HostOS's initramfs + disk: phase 1, phase 2,
            state check and mount, services; "ready" = the init's "HostOS ready" line.
            The VM has an SMBIOS UUID, as cloud VMs do (one run without, for information).
  uefi    : HostOS as it really boots (OVMF + systemd-boot), for information.

Time is the host's wall clock from QEMU start to the ready line on the serial console;
the guest's uptime at that line is printed too. Also PID 1's binary size and resident
memory once idle (test image, 10 s after ready) against Debian's tini.
Usage: bench/boot.py [--runs N]      (needs ./build.sh image/hostos.json qemu-tests/image/hostos-test.json)
"""
import json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCEL = os.environ.get("HOSTOS_ACCEL") or "tcg"
OVMF = "/usr/share/OVMF/OVMF_CODE_4M.fd"
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5


def out(*p):
    return os.path.join(ROOT, "out", *p)


def qemu(work, extra):
    console = os.path.join(work, "console.log")
    open(console, "w").close()
    args = ["qemu-system-x86_64", "-machine", "q35", "-accel", ACCEL, "-m", "1024", "-smp", "2",
            "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none", "-no-reboot",
            "-serial", "file:" + console] + extra
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), console


def wait_for(proc, console, pattern, timeout=180):
    start = time.monotonic()
    rx = re.compile(pattern)
    while time.monotonic() - start < timeout:
        with open(console, errors="replace") as f:
            m = rx.search(f.read())
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise SystemExit(f"no /{pattern}/ within {timeout} s; console: {console}")


def busybox_initramfs(work):
    tree = os.path.join(work, "bb")
    for d in ["bin", "dev", "proc", "sys"]:
        os.makedirs(os.path.join(tree, d))
    shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
    os.symlink("busybox", os.path.join(tree, "bin", "sh"))
    os.mknod(os.path.join(tree, "dev", "console"), 0o20600, os.makedev(5, 1))
    with open(os.path.join(tree, "init"), "w") as f:
        f.write("#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n"
                "echo \"BUSYBOX READY $(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n"
                "/bin/busybox poweroff -f\n")
    os.chmod(os.path.join(tree, "init"), 0o755)
    cpio = os.path.join(work, "busybox.cpio")
    files = subprocess.run("find . | sort", shell=True, cwd=tree, capture_output=True, text=True, check=True).stdout
    with open(cpio, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=files.encode(), stdout=f, check=True)
    return cpio


def run_floor(work, kernel, cpio, cmdline):
    t0 = time.monotonic()
    p, console = qemu(work, ["-kernel", kernel, "-initrd", cpio, "-append", cmdline])
    m = wait_for(p, console, r"BUSYBOX READY ([0-9.]+)")
    wall = time.monotonic() - t0
    p.kill(); p.wait()
    return wall, float(m.group(1))


def fresh_disk(work, image):
    disk = os.path.join(work, "disk.img")
    subprocess.run(["cp", "--sparse=always", out(image, "disk.img"), disk], check=True)
    return disk


def run_hostos(work, kernel, cmdline, uefi=False, uuid=True):
    disk = fresh_disk(work, "hostos")
    extra = ["-drive", f"if=virtio,format=raw,file={disk}"]
    if uuid:  # every cloud VM has an SMBIOS UUID; HostOS takes its machine id from it
        extra += ["-uuid", str(__import__("uuid").uuid4())]
    if uefi:
        vars_fd = os.path.join(work, "vars.fd")
        shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.fd", vars_fd)
        extra = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}"] + extra
    else:
        extra = ["-kernel", kernel, "-initrd", out("hostos", "initrd.img"), "-append", cmdline] + extra
    t0 = time.monotonic()
    p, console = qemu(work, extra)
    m = wait_for(p, console, r"\[\s*([0-9.]+)\] hostos: HostOS ready")
    wall = time.monotonic() - t0
    p.kill(); p.wait()
    return wall, float(m.group(1))


def pid1_idle_rss_kib(work):
    """Boots the test image and reads PID 1's VmRSS through the test shell, 10 s after ready."""
    disk = fresh_disk(work, "hostos-test")
    shell = os.path.join(work, "shell.sock")
    vars_fd = os.path.join(work, "vars.fd")
    shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.fd", vars_fd)
    p, console = qemu(work, ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF}",
                             "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
                             "-drive", f"if=virtio,format=raw,file={disk}",
                             "-serial", f"unix:{shell},server=on,wait=off"])
    wait_for(p, console, r"hostos: HostOS ready")
    time.sleep(10)
    s = socket.socket(socket.AF_UNIX)
    s.connect(shell)
    s.settimeout(30)
    s.sendall(b"\necho RSS=$(awk '/^VmRSS/ {print $2}' /proc/1/status)=END\n")
    buf = b""
    while b"=END" not in buf.replace(b"=END\\n", b""):
        buf += s.recv(4096)
        m = re.search(rb"RSS=([0-9]+)=END", buf)
        if m:
            break
    p.kill(); p.wait()
    return int(m.group(1))


def tini_reference():
    if not shutil.which("tini"):  # the package lists are there: build.sh fetched them
        subprocess.run(["apt-get", "install", "-y", "-q", "tini"], check=True, stdout=subprocess.DEVNULL)
    tini = shutil.which("tini") or "/usr/bin/tini"
    p = subprocess.Popen([tini, "-s", "--", "sleep", "30"])
    time.sleep(1)
    with open(f"/proc/{p.pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    p.kill(); p.wait()
    static = "/usr/bin/tini-static"
    return tini, os.path.getsize(os.path.realpath(tini)), (os.path.getsize(static) if os.path.exists(static) else None), rss


def main():
    manifest = json.load(open(out("hostos", "manifest.json")))
    kernel = out("hostos", "vmlinuz")
    base = manifest["cmdline"].split(" hostos.")[0]
    work = tempfile.mkdtemp(prefix="hostos-bench-")
    cpio = busybox_initramfs(work)
    floor, hostos, uefi = [], [], []
    print(f"accelerator: {ACCEL}, runs: {RUNS}, kernel {manifest['kernel']}, cmdline base '{base}'")
    for i in range(RUNS):
        floor.append(run_floor(work, kernel, cpio, base))
        hostos.append(run_hostos(work, kernel, manifest["cmdline"]))
        print(f"  run {i + 1}: busybox {floor[-1][0]:.2f} s (uptime {floor[-1][1]:.2f}), "
              f"hostos {hostos[-1][0]:.2f} s (uptime {hostos[-1][1]:.2f})", flush=True)
    for i in range(max(1, RUNS // 2)):
        uefi.append(run_hostos(work, kernel, manifest["cmdline"], uefi=True))
    no_uuid = run_hostos(work, kernel, manifest["cmdline"], uuid=False)
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print("\nboot to ready (median of %d, direct kernel boot, same kernel and VM)" % RUNS)
    print(f"  busybox initramfs (floor): {med(floor, 0):6.2f} s wall  {med(floor, 1):5.2f} s uptime")
    print(f"  HostOS                   : {med(hostos, 0):6.2f} s wall  {med(hostos, 1):5.2f} s uptime")
    print(f"  ratio HostOS / floor     : {med(hostos, 0) / med(floor, 0):6.2f}x wall  "
          f"{med(hostos, 1) / med(floor, 1):5.2f}x uptime   (target <= 1.5x)")
    print(f"  HostOS via OVMF + systemd-boot: {med(uefi, 0):.2f} s wall, {med(uefi, 1):.2f} s uptime (median of {len(uefi)})")
    print(f"  HostOS first boot without an SMBIOS UUID (machine id from getrandom, waits for the CRNG): "
          f"{no_uuid[0]:.2f} s wall, {no_uuid[1]:.2f} s uptime")

    init = out("publish", "hostos-init", "hostos-init")
    rss = pid1_idle_rss_kib(work)
    tini, tini_size, tini_static, tini_rss = tini_reference()
    print("\nPID 1")
    print(f"  hostos-init binary: {os.path.getsize(init) / 1e6:.2f} MB (target < 4 MB); "
          f"tini {tini_size / 1e3:.0f} kB, tini-static {tini_static / 1e3 if tini_static else 0:.0f} kB")
    print(f"  hostos-init RSS idle (10 s after ready, test image): {rss / 1024:.1f} MB (target < 20 MB); "
          f"tini RSS supervising one child on the host: {tini_rss / 1024:.1f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
