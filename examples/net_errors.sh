#!/usr/bin/env bash
# The net examples' command line: net_errors.sh TASK_MASTER TASK_WORKER NET_SHARED_QUEUE
# - `--help` prints a usage line and exits 0 (and the master starts no server);
# - a refused connection and a wrong authkey are one line on stderr and exit status 1 (not
#   std::terminate's abort, status 134);
# - an unknown flag is a usage line and exit status 2.
set -uo pipefail
master=$1 worker=$2 shared=$3
fail() { echo "net_errors: $*"; exit 1; }
out=$(mktemp) err=$(mktemp)
mpid=""
cleanup() {
  [[ -n "$mpid" ]] && kill -KILL -- "-$mpid" 2>/dev/null || true
  rm -f "$out" "$err"
}
trap cleanup EXIT

# expect STATUS LINES-ON-STDERR PATTERN COMMAND...: runs COMMAND, checks its exit status, the
# number of lines it wrote to stderr and a pattern in its stdout+stderr.
expect() {
  local status=$1 lines=$2 pattern=$3; shift 3
  timeout 20 "$@" >"$out" 2>"$err"
  local got=$?
  echo "$* -> status $got: $(head -c 300 "$out" "$err" | tr '\n' ' ')"
  [[ $got -eq $status ]] || fail "$* exited with $got, expected $status"
  [[ $(wc -l <"$err") -eq $lines ]] || fail "$* wrote $(wc -l <"$err") lines to stderr, expected $lines"
  grep -Eq "$pattern" "$out" "$err" || fail "$* did not print /$pattern/"
}

for p in "$master" "$worker" "$shared"; do
  expect 0 0 '^usage: ' "$p" --help
  expect 2 2 'unknown flag --bogus' "$p" --bogus 1
done

# Nothing listens on port 1 of loopback (a privileged port no test machine serves).
expect 1 1 'error: .*(refused|Connection)' "$worker" --port 1 --delay 0

# A master with one authkey, a worker with another.
exec 3< <(exec timeout -k 5 30 "$master" --port 0 --authkey right 2>&1)
mpid=$!
port=""
while IFS= read -r -t 20 line <&3; do
  if [[ "$line" =~ listening\ on\ .*:([0-9]+)$ ]]; then port=${BASH_REMATCH[1]}; break; fi
done
[[ -n "$port" ]] || fail "the master never said it listens"
expect 1 1 'error: .*AuthenticationError' "$worker" --port "$port" --authkey wrong --delay 0
echo "net_errors: all checks passed"
