#!/usr/bin/env python3
"""Container start-to-exit latency: HostOS's runtime against crun, same bundle, same VM, same run.

Builds bench/image/hostos-bench.json (the test image + crun and its libraries), boots it
under TCG (HOSTOS_ACCEL to change), and through the test shell on ttyS1:
  - 100 sequential runs of /bin/true (busybox) in a busybox bundle, each runtime driven
    from its command line: `hostos-runc run` (the front, served by hostos-init), the same
    runtime run in the caller's process (/usr/lib/hostos/hostos-runc, what the front runs
    for what hostos-init does not serve), `hostos-guestcheck container-run BUNDLE ID` (create, start,
    wait, delete through HostOs.Containers) and `crun run -b BUNDLE ID`; and, for
    reference, the same runs one after another in one process (`container-run BUNDLE ID
    COUNT`), the way PID 1 starts containers, where the runtime's code has already run;
  - 20 containers started in parallel with each;
  - exec of /bin/true into a running container, sequential, with each;
  - resident memory of the runtime's own processes while one container runs.
Times come from the guest's /proc/uptime (10 ms resolution) around each batch. The
sequential runs go in ROUNDS rounds in which every runtime takes its turn (RUNS/ROUNDS
runs each), and the figures are medians over the rounds: this machine's speed drifts by
tens of percent within minutes, and one block per runtime let the drift pick the winner.
Usage: bench/containers.py [--runs N]
"""
import os, subprocess, sys

from vm import ROOT, Vm

RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 100
ROUNDS = 5


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    subprocess.run([os.path.join(ROOT, "build.sh"), "bench/image/hostos-bench.json"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with Vm("hostos-bench") as sh:
        sh.check("hostos-guestcheck make-bundle /tmp/b true && hostos-guestcheck make-bundle /tmp/s sleep 3 && mkdir -p /run/crun /run/runc")
        # stdin from /dev/null for all: runc run in the foreground stops on a terminal stdin
        ours = "hostos-runc --root /run/hostos-runc run -b /tmp/b c$i >/dev/null </dev/null"
        direct = "/usr/lib/hostos/hostos-runc --root /run/hostos-runc run -b /tmp/b c$i >/dev/null </dev/null"
        library = "hostos-guestcheck container-run /tmp/b c$i </dev/null"
        crun = "crun --root /run/crun run -b /tmp/b c$i >/dev/null </dev/null"
        runc = "runc --root /run/runc run -b /tmp/b c$i >/dev/null </dev/null"
        up = "cut -d' ' -f1 /proc/uptime"

        def seq(cmd, n):
            out = sh.check(f"a=$({up}); i=0; while [ $i -lt {n} ]; do {cmd} || {{ echo RUN-FAILED; break; }}; i=$((i+1)); done; b=$({up}); echo $a $b")
            if "RUN-FAILED" in out:
                raise SystemExit(f"a run failed: {cmd}\n{out}")
            a, b = map(float, out.split()[-2:])
            return (b - a) / n * 1000

        def warm(tag, n):
            """n containers in one process: the runtime warm, as in PID 1 (its one start included)."""
            out = sh.check(f"a=$({up}); hostos-guestcheck container-run /tmp/b {tag} {n} </dev/null || echo RUN-FAILED; b=$({up}); echo $a $b")
            if "FAIL" in out:  # RUN-FAILED, or the checker's own "FAIL ..." line
                raise SystemExit(f"a warm run failed\n{out}")
            a, b = map(float, out.split()[-2:])
            return (b - a) / n * 1000

        def par(cmd, n):
            out = sh.check(f"a=$({up}); i=0; while [ $i -lt {n} ]; do ({cmd}) & i=$((i+1)); done; wait; b=$({up}); echo $a $b")
            a, b = map(float, out.split()[-2:])
            return (b - a) * 1000

        # The front must be served, or this measures the other path.
        served = sh.check("hostos-runc --debug --root /run/hostos-runc state nothing-here 2>&1 </dev/null; true")
        if "served by hostos-init" not in served:
            raise SystemExit(f"hostos-runc is not served by hostos-init in the bench VM:\n{served}")
        for cmd in (ours, direct, library, crun, runc):
            seq(cmd, 3)  # warm the page cache for each
        warm("wu", 3)
        print(f"start-to-exit of /bin/true in a busybox bundle, {RUNS} sequential runs each in {ROUNDS} rounds "
              f"taking turns (TCG, same VM, same run; medians over the rounds)")
        names = ["hostos-runc run (front, served by hostos-init)", "HostOs.Containers in-process (hostos-guestcheck)",
                 "crun 1.8.1 run", "runc 1.1.5 run", "hostos-runc run in the caller's process"]
        cmds = [ours, library, crun, runc, direct]
        names.append("HostOs.Containers warm in one process (as PID 1)")
        rounds = [[seq(cmd.replace("c$i", f"c{r}_$i"), RUNS // ROUNDS) for cmd in cmds] + [warm(f"w{r}", RUNS // ROUNDS)]
                  for r in range(ROUNDS)]
        for k, name in enumerate(names):
            per_round = [row[k] for row in rounds]
            print(f"  {name:52s} {median(per_round):7.1f} ms per container   (rounds: "
                  + " ".join(f"{x:.0f}" for x in per_round) + ")")
        print(f"  ratio hostos-runc / crun: {median([row[0] / row[2] for row in rounds]):.2f}x   (target <= 1.0x); "
              f"hostos-runc / runc: {median([row[0] / row[3] for row in rounds]):.2f}x   (medians of each round's ratio)")
        print(f"  hostos-runc in the caller's process / crun: {median([row[4] / row[2] for row in rounds]):.2f}x "
              f"(the path for what hostos-init does not serve: a caller in another namespace, under a subreaper, ...)")
        print(f"  for reference, the runtime warm in one process / crun: {median([row[5] / row[2] for row in rounds]):.2f}x")
        par_rounds = [(par(ours.replace("c$i", f"p{r}_$i"), 20), par(crun.replace("c$i", f"p{r}_$i"), 20)) for r in range(3)]
        print(f"20 containers started in parallel (3 rounds taking turns, medians): HostOS {median([o for o, _ in par_rounds]):.0f} ms, "
              f"crun {median([c for _, c in par_rounds]):.0f} ms, ratio {median([o / c for o, c in par_rounds]):.2f}x")

        # exec into a running container (what exec health probes do): /bin/true, sequential
        sh.check("hostos-guestcheck make-bundle /tmp/l sleep 3600")
        runtimes = [("hostos-runc exec", "hostos-runc --root /run/hostos-runc"), ("crun exec", "crun --root /run/crun")]
        for _, rt in runtimes:
            sh.check(f"{rt} create -b /tmp/l e1 >/dev/null </dev/null && {rt} start e1")
            seq(f"{rt} exec e1 true >/dev/null </dev/null", 3)
        exec_rounds = [[seq(f"{rt} exec e1 true >/dev/null </dev/null", RUNS // ROUNDS) for _, rt in runtimes] for _ in range(ROUNDS)]
        for _, rt in runtimes:
            sh.check(f"{rt} delete --force e1")
        print(f"exec of /bin/true into a running container, {RUNS} sequential runs each in {ROUNDS} rounds: "
              + ", ".join(f"{n} {median([row[k] for row in exec_rounds]):.1f} ms" for k, (n, _) in enumerate(runtimes))
              + f", ratio {median([row[0] / row[1] for row in exec_rounds]):.2f}x")

        def rss(cmd, procname):
            """KB: the RSS of the runtime's own processes while one container runs, and how much PID 1's grew."""
            pid1 = "awk '/^Rss:/ {print $2}' /proc/1/smaps_rollup"
            before = int(sh.check(pid1))
            sh.check(f"({cmd}) & sleep 1")
            during = int(sh.check(pid1))
            # smaps_rollup walks the page tables; VmRSS lags for a process with few page faults
            # (the kernel syncs each task's counters every 64 events).
            out = sh.check(f"for p in $(pidof {procname}); do awk '/^Rss:/ {{print $2}}' /proc/$p/smaps_rollup; done; wait")
            return sum(int(x) for x in out.split()), during - before
        m_ours, m_init = rss("hostos-runc --root /run/hostos-runc run -b /tmp/s m1 >/dev/null </dev/null", "hostos-runc")
        m_direct, _ = rss("/usr/lib/hostos/hostos-runc --root /run/hostos-runc run -b /tmp/s m3 >/dev/null </dev/null", "hostos-runc")
        m_crun, _ = rss("crun --root /run/crun run -b /tmp/s m2 >/dev/null </dev/null", "crun")
        print(f"runtime memory while one container runs (RSS of the runtime's own processes): "
              f"HostOS front {m_ours} kB (hostos-init's RSS meanwhile {m_init:+d} kB), "
              f"in the caller's process {m_direct / 1024:.1f} MB, crun {m_crun / 1024:.1f} MB")

if __name__ == "__main__":
    main()
