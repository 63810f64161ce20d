"""A benchmark VM: a copy of a built image booted under TCG (HOSTOS_ACCEL to change) as
the QEMU tests boot it, with the test shell on ttyS1. Shared by the bench scripts."""
import os, re, shutil, socket, subprocess, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVMF = "/usr/share/OVMF/OVMF_CODE_4M.fd"


class Shell:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        self.buf = b""
        self.n = 0

    def run(self, cmd, timeout=600):
        self.n += 1
        marker = f"__END_{self.n}__"
        self.s.settimeout(timeout)
        self.s.sendall(f"{cmd}\necho \"{marker} $?\"\n".encode())
        while True:
            m = re.search(rf"(?s)(.*?){marker} (\d+)\n".encode(), self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return int(m.group(2)), m.group(1).decode(errors="replace")
            self.buf += self.s.recv(65536)

    def check(self, cmd, timeout=600):
        code, out = self.run(cmd, timeout)
        if code != 0:
            raise SystemExit(f"guest command failed ({code}): {cmd}\n{out}")
        return out


class Vm:
    """`with Vm("hostos-bench", extra_disks=[...]) as sh:` boots out/NAME/disk.img, waits
    for "HostOS ready" and yields the shell; the VM and its copy are gone afterwards.
    Extra disks are attached read-only as /dev/vdb, /dev/vdc..."""

    def __init__(self, image, extra_disks=()):
        self.image, self.extra = image, list(extra_disks)

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="hostos-bench-vm-")
        disk = os.path.join(self.work, "disk.img")
        subprocess.run(["cp", "--sparse=always", os.path.join(ROOT, "out", self.image, "disk.img"), disk], check=True)
        shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.fd", os.path.join(self.work, "vars.fd"))
        self.console = os.path.join(self.work, "console.log")
        shell_sock = os.path.join(self.work, "shell.sock")
        args = ["qemu-system-x86_64", "-machine", "q35", "-accel", os.environ.get("HOSTOS_ACCEL") or "tcg", "-m", "1024",
                "-smp", "2", "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none", "-uuid", str(uuid.uuid4()),
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF}",
                "-drive", f"if=pflash,format=raw,unit=1,file={os.path.join(self.work, 'vars.fd')}",
                "-drive", f"if=virtio,format=raw,file={disk}",
                "-serial", f"file:{self.console}", "-serial", f"unix:{shell_sock},server=on,wait=off"]
        for d in self.extra:
            args += ["-drive", f"if=virtio,format=raw,readonly=on,file={d}"]
        self.qemu = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 180
            while not os.path.exists(self.console) or "HostOS ready" not in open(self.console, errors="replace").read():
                if time.time() > deadline:
                    raise SystemExit("no 'HostOS ready' within 180 s")
                time.sleep(0.2)
            sh = Shell(shell_sock)
            time.sleep(1)
            sh.run("stty -echo; export PS1=")
            return sh
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        self.qemu.kill()
        self.qemu.wait()
        shutil.rmtree(self.work, ignore_errors=True)
