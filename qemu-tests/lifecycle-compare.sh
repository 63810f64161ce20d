#!/bin/sh
# Runs qemu-tests/lifecycle.sh against a runtime and against runc, on this machine, and
# holds the runtime to runc: every check passes for the runtime, and runc's results are the
# same, except where runc 1.1 departs from the runtime spec (listed below, with the fix
# upstream). Ends with "N passed, N failed" (each lifecycle check of the runtime, plus the
# comparison). runc runs here, on the host, rather than in the TCG guest: there it once
# drove the guest kernel into a soft lockup (both vCPUs, in runc and its init; docs/testing.md).
#   lifecycle-compare.sh RUNTIME
here=$(dirname "$0")
ours=$(sh "$here/lifecycle.sh" "$1" 2>&1)
echo "$ours"
if command -v runc >/dev/null 2>&1; then
  theirs=$(sh "$here/lifecycle.sh" runc 2>&1)
  names() { echo "$1" | sed -n 's/^\(not \)\{0,1\}ok - \([^:]*\).*/\2/p'; }
  # Where runc 1.1 departs from the spec: poststart at create (opencontainers/runc#5186).
  known="poststart waits for start"
  unexpected=$(echo "$theirs" | sed -n 's/^not ok - \([^:]*\).*/\1/p' | grep -vxF "$known")
  if [ "$(names "$ours")" = "$(names "$theirs")" ] && [ -z "$unexpected" ]; then
    echo "ok - runc passes the same $(names "$theirs" | wc -l) checks (but the listed spec deviation)"
    compare_fail=0
  else
    echo "not ok - runc and $1 differ: runc's failures: ${unexpected:-none}"
    echo "$theirs" | sed 's/^/  runc: /'
    compare_fail=1
  fi
else
  echo "not ok - runc is not installed (build.sh --deps-only installs it)"
  compare_fail=1
fi
p=$(echo "$ours" | tail -1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(echo "$ours" | tail -1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -n "$p" ] || { p=0; f=1; }
echo "$((p + 1 - compare_fail)) passed, $((f + compare_fail)) failed"
[ "$f" -eq 0 ] && [ "$compare_fail" -eq 0 ]
