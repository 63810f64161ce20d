#!/bin/sh
# The OCI lifecycle as scripts drive runc: create, state, start, exec, list, kill, delete,
# run, with runc's exit codes. Runs unchanged against runc, crun and hostos-runc (the QEMU
# test LifecycleTests runs all three in the same VM and expects the same results).
#   lifecycle.sh RUNTIME        (RUNTIME: a command, e.g. "runc" or "hostos-runc")
# Needs a static busybox at $BUSYBOX (default /usr/bin/busybox) for the bundles' root.
# One line per check, "ok - ..." or "not ok - ...", then "N passed, N failed".
RT=$1
W=${WORK:-/tmp/lifecycle-$(basename "$RT")}
ROOT=$W/state
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1: $2"; }
rt() { "$RT" --root "$ROOT" "$@"; }

# expect DESC RC COMMAND...: the command's exit code must be RC. Output goes to a file:
# a container inherits stdout, and a $(...) around create would wait for it to exit.
expect() {
  desc=$1 want=$2
  shift 2
  "$@" >"$W/out" 2>&1 </dev/null
  got=$?
  if [ "$got" = "$want" ]; then ok "$desc"; else bad "$desc" "exit $got, expected $want; output: $(head -c 300 "$W/out")"; fi
}

# expect_output DESC TEXT: the last command's output contains TEXT.
expect_output() {
  if grep -q -- "$2" "$W/out"; then ok "$1"; else bad "$1" "'$2' not in: $(head -c 300 "$W/out")"; fi
}

field() { # ID FIELD: a field of `state ID`, whatever the JSON's layout
  rt state "$1" 2>/dev/null | tr -d ' \n' | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

wait_status() { # ID STATUS: up to 5 s
  i=0
  while [ $i -lt 50 ]; do
    [ "$(field "$1" status)" = "$2" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

check_status() { # DESC ID STATUS
  if wait_status "$2" "$3"; then ok "$1"; else bad "$1" "status is '$(field "$2" status)', expected $3"; fi
}

bundle() { # DIR ARGS-AS-JSON [HOOKS-JSON] [TERMINAL]
  mkdir -p "$1/rootfs/bin" "$1/rootfs/proc" "$1/rootfs/dev" "$1/rootfs/tmp"
  cp "$BUSYBOX" "$1/rootfs/bin/busybox"
  for a in sh echo sleep true id cat env mkdir tr tty; do ln -sf busybox "$1/rootfs/bin/$a"; done
  hooks_line=""
  [ -z "${3:-}" ] || hooks_line="
  \"hooks\": $3,"
  cat >"$1/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "lifecycle",$hooks_line
  "process": {
    "terminal": ${4:-false},
    "args": $2,
    "env": ["PATH=/bin", "IN_SPEC=yes"],
    "cwd": "/",
    "user": { "uid": 0, "gid": 0 },
    "noNewPrivileges": true,
    "capabilities": {
      "bounding": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID"],
      "effective": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID"],
      "permitted": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID"]
    }
  },
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }
  ],
  "linux": {
    "namespaces": [{ "type": "pid" }, { "type": "mount" }, { "type": "uts" }, { "type": "ipc" }, { "type": "network" }],
    "maskedPaths": ["/proc/kcore", "/proc/keys"],
    "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
    "seccomp": {
      "defaultAction": "SCMP_ACT_ALLOW",
      "architectures": ["SCMP_ARCH_X86_64"],
      "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }]
    }
  }
}
EOF
}

json_field() { # FILE FIELD: a field of a state JSON file
  tr -d ' \n' <"$1" 2>/dev/null | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

hook() { # SCRIPT: a hook running /bin/sh -c SCRIPT
  printf '{ "path": "/bin/sh", "args": ["sh", "-c", "%s"], "env": ["PATH=/usr/bin:/bin"] }' "$1"
}

rm -rf "$W"
mkdir -p "$W"
bundle "$W/sleep" '["sleep", "300"]'
bundle "$W/exit7" '["sh", "-c", "exit 7"]'
bundle "$W/fds" '["sh", "-c", "for f in /proc/self/fd/*; do echo $f; done"]'
bundle "$W/hooked" '["sleep", "300"]' "{
    \"createRuntime\": [$(hook "cat > $W/createRuntime.json")],
    \"createContainer\": [$(hook "cat > $W/createContainer.json")],
    \"startContainer\": [$(hook "cat > /tmp/startContainer.json")],
    \"poststart\": [$(hook "cat > $W/poststart.json")],
    \"poststop\": [$(hook "cat > $W/poststop.json")]
  }"
bundle "$W/badhook" '["sleep", "300"]' "{ \"createRuntime\": [$(hook "echo refusing; exit 3")] }"
bundle "$W/tty" '["sh", "-c", "tty; echo in-a-tty; sleep 300"]' "" true
bundle "$W/ttyrun" '["sh", "-c", "tty; echo in-a-tty"]' "" true

# create, state, start
expect "create c1" 0 rt create --bundle "$W/sleep" --pid-file "$W/c1.pid" c1
check_status "c1 is created" c1 created
pid=$(field c1 pid)
if [ -n "$pid" ] && [ "$pid" = "$(cat "$W/c1.pid" 2>/dev/null)" ] && [ -d "/proc/$pid" ]; then ok "state pid is the pid file's and alive"; else bad "state pid is the pid file's and alive" "state '$pid', file '$(cat "$W/c1.pid" 2>/dev/null)'"; fi
expect "create c1 again fails" 1 rt create --bundle "$W/sleep" c1
expect "start c1" 0 rt start c1
check_status "c1 is running" c1 running
expect "start c1 again fails" 1 rt start c1

# exec
expect "exec exit code" 3 rt exec c1 sh -c 'echo exec-output; exit 3'
expect_output "exec output" exec-output
expect "exec sees the container's env and --env" 0 rt exec --env EXTRA=1 c1 sh -c 'echo "$IN_SPEC/$EXTRA"'
expect_output "exec env values" "yes/1"
expect "exec as another user" 0 rt exec --user 1000:1000 c1 id -u
expect_output "exec uid" 1000
expect "exec joins the pid namespace" 0 rt exec c1 sh -c 'cat /proc/1/cmdline | tr "\0" " "'
expect_output "pid 1 is the container's process" "sleep 300"

expect "exec'd processes get the container's seccomp filter" 0 rt exec c1 sh -c 'mkdir /tmp/x 2>&1; echo "mkdir=$?"; true'
expect_output "mkdir refused with EACCES by the filter" "Permission denied"

# pause, resume, ps
expect "pause c1" 0 rt pause c1
check_status "c1 is paused" c1 paused
expect "pause c1 again fails" 1 rt pause c1
expect "delete a paused container fails" 1 rt delete c1
expect "resume c1" 0 rt resume c1
check_status "c1 is running again" c1 running
expect "resume a running container fails" 1 rt resume c1
expect "ps --format json" 0 rt ps --format json c1
expect_output "ps lists the init's pid" "$(field c1 pid)"

# list
expect "list -q" 0 rt list -q
expect_output "list -q names c1" c1
expect "list --format json" 0 rt list --format json
expect_output "list json names c1" '"id": *"c1"'

# kill, delete
expect "delete a running container fails" 1 rt delete c1
expect "kill c1 KILL" 0 rt kill c1 KILL
check_status "c1 is stopped" c1 stopped
expect "exec in a stopped container fails (255, as runc)" 255 rt exec c1 true
expect "delete c1" 0 rt delete c1
expect "state of a deleted container fails" 1 rt state c1

# run
expect "run returns the container's exit code" 7 rt run --bundle "$W/exit7" c2
# A descriptor the caller leaves open without close-on-exec reaches no container process
# (runc closes every one above 2 unless --preserve-fds).
exec 9</dev/null
expect "run with a stray descriptor open" 0 rt run --bundle "$W/fds" c2fd
exec 9<&-
if grep -q "/proc/self/fd/9" "$W/out"; then bad "the container does not get the caller's stray descriptor" "$(head -c 300 "$W/out")"
else ok "the container does not get the caller's stray descriptor"; fi
expect "run deletes the container afterwards" 1 rt state c2
expect "run --detach" 0 rt run --detach --bundle "$W/sleep" c3
check_status "c3 is running" c3 running
expect "kill by number" 0 rt kill c3 9
check_status "c3 is stopped after signal 9" c3 stopped
expect "delete c3" 0 rt delete c3
expect "run --detach again" 0 rt run -d --bundle "$W/sleep" c4
expect "delete --force a running container" 0 rt delete --force c4
expect "c4 is gone" 1 rt state c4

# created, then deleted without start
expect "create c5" 0 rt create --bundle "$W/sleep" c5
expect "delete a created container" 0 rt delete c5
expect "c5 is gone" 1 rt state c5

# hooks: each gets the state on stdin, at its point of the lifecycle
expect "create with hooks" 0 rt create --bundle "$W/hooked" c6
if [ "$(json_field "$W/createRuntime.json" status)" = creating ] && [ "$(json_field "$W/createRuntime.json" pid)" = "$(field c6 pid)" ]; then
  ok "createRuntime hook saw the creating container and its pid"
else
  bad "createRuntime hook saw the creating container and its pid" "$(cat "$W/createRuntime.json" 2>&1)"
fi
if [ "$(json_field "$W/createContainer.json" id)" = c6 ]; then ok "createContainer hook ran"; else bad "createContainer hook ran" "$(cat "$W/createContainer.json" 2>&1)"; fi
# The spec runs poststart after start; runc 1.1 runs it at create (fixed upstream: opencontainers/runc#5186).
[ -e "$W/poststart.json" ] && bad "poststart waits for start" "it ran at create" || ok "poststart waits for start"
expect "start with hooks" 0 rt start c6
if [ "$(json_field "$W/poststart.json" id)" = c6 ]; then ok "poststart hook ran"; else bad "poststart hook ran" "$(cat "$W/poststart.json" 2>&1)"; fi
# start returns once the init has taken the start; the startContainer hook runs after that,
# before the program (runtime-spec), so a fast enough exec finds its file made but not yet
# written: wait up to 5 s for what it writes.
i=0
while [ $i -lt 50 ]; do
  rt exec c6 cat /tmp/startContainer.json 2>/dev/null </dev/null | grep -q '"id": *"c6"' && break
  sleep 0.1
  i=$((i + 1))
done
expect "startContainer hook ran inside the container" 0 rt exec c6 cat /tmp/startContainer.json
expect_output "startContainer hook got the state" '"id": *"c6"'
expect "kill c6" 0 rt kill c6 KILL
check_status "c6 is stopped" c6 stopped
expect "delete c6" 0 rt delete c6
if [ "$(json_field "$W/poststop.json" id)" = c6 ]; then ok "poststop hook ran at delete"; else bad "poststop hook ran at delete" "$(cat "$W/poststop.json" 2>&1)"; fi
expect "a failing createRuntime hook fails create" 1 rt create --bundle "$W/badhook" c7
expect "and leaves no container" 1 rt state c7

# terminals: run attached (the runtime proxies the pty), a console socket, exec -t
# (runc attaches only with a controlling terminal of its own: checked where there is one)
if (: </dev/tty) 2>/dev/null; then
  expect "run with a terminal" 0 rt run --bundle "$W/ttyrun" c8
  expect_output "the process has a pty" "/dev/pts/"
  expect_output "its output comes through the pty" "in-a-tty"
fi
expect "create with a terminal needs a console socket" 1 rt create --bundle "$W/tty" c9
RECEIVER=${RECEIVER:-hostos-guestcheck}
"$RECEIVER" console-receive "$W/console.sock" "$W/console.out" in-a-tty &
receiver=$!
i=0
while [ ! -S "$W/console.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect "create with --console-socket" 0 rt create --bundle "$W/tty" --console-socket "$W/console.sock" c9
expect "start c9" 0 rt start c9
wait $receiver
if grep -q "/dev/pts/" "$W/console.out" && grep -q in-a-tty "$W/console.out"; then ok "the console socket got the pty"; else bad "the console socket got the pty" "$(cat "$W/console.out" 2>&1)"; fi
if (: </dev/tty) 2>/dev/null; then
  expect "exec -t" 0 rt exec -t c9 tty
  expect_output "exec -t gets a pty of its own" "/dev/pts/"
fi
expect "delete --force c9" 0 rt delete --force c9

# the runtime's own default spec, edited as scripts do, runs
mkdir -p "$W/specd"
cp -a "$W/sleep/rootfs" "$W/specd/rootfs"
expect "spec writes a config.json" 0 rt spec --bundle "$W/specd"
sed -i 's/"terminal": true/"terminal": false/' "$W/specd/config.json"
expect "its default spec runs (sh on an empty stdin)" 0 rt run --bundle "$W/specd" c11
expect "spec refuses to overwrite" 1 rt spec --bundle "$W/specd"

# errors
expect "state of an unknown container fails" 1 rt state nope
expect "kill of an unknown container fails" 1 rt kill nope KILL
expect "delete of an unknown container fails" 1 rt delete nope
expect "create without config.json fails" 1 rt create --bundle "$W" c6
expect "a failed create leaves no container" 1 rt state c6
# joining a namespace by a path that does not exist
bundle "$W/nons" '["true"]'
sed -i 's|{ "type": "network" }|{ "type": "network", "path": "/nonexistent/ns/net" }|' "$W/nons/config.json"
expect "create joining a namespace that does not exist fails" 1 rt create --bundle "$W/nons" c13
expect "and leaves no container" 1 rt state c13
# a hostile root: a mount destination through a symlink to a host directory never reaches
# it (runc and crun resolve the link inside the root, hostos-runc refuses the destination)
bundle "$W/hostile" '["true"]'
mkdir -p "$W/host-dir"
ln -s "$W/host-dir" "$W/hostile/rootfs/escape"
sed -i '/"mounts": \[/a\    { "destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs" },' "$W/hostile/config.json"
rt run --bundle "$W/hostile" c12 >/dev/null 2>&1 </dev/null
rt delete --force c12 >/dev/null 2>&1
if [ -e "$W/host-dir/sub" ] || grep -q " $W/host-dir" /proc/self/mountinfo; then
  bad "a mount through a symlink in the root stays in the root" "$(ls -la "$W/host-dir"; grep " $W/host-dir" /proc/self/mountinfo)"
else
  ok "a mount through a symlink in the root stays in the root"
fi
expect "exec in an unknown container fails" 255 rt exec nope true
expect "list is empty at the end" 0 rt list -q
if [ -s "$W/out" ]; then bad "nothing left" "$(cat "$W/out")"; else ok "nothing left"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
