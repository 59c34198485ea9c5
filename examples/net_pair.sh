#!/usr/bin/env bash
# Runs a task master and a task worker (C++ or Python) against each other on a free
# port: net_pair.sh MASTER-COMMAND... -- WORKER-COMMAND...
# The master is started with --port 0 and prints "master listening on HOST:PORT" once it
# listens; the worker is started only then (no fixed sleep), with --port PORT. Checks that
# the master got its 10 results and both exited cleanly. The master's process group is
# always killed on exit, so no server process outlives the test.
set -euo pipefail
master=()
while [[ $# -gt 0 && "$1" != "--" ]]; do master+=("$1"); shift; done
shift
worker=("$@")

log=$(mktemp)
mpid=""
cleanup() {
  [[ -n "$mpid" ]] && kill -KILL -- "-$mpid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

# timeout runs the master in a process group of its own (pgid = its pid), so the group kill
# above also reaches the manager's server process.
exec 3< <(exec timeout -k 5 50 "${master[@]}" --port 0 2>&1)
mpid=$!
port=""
while IFS= read -r -t 30 line <&3; do
  echo "master: $line"
  if [[ "$line" =~ listening\ on\ .*:([0-9]+)$ ]]; then port=${BASH_REMATCH[1]}; break; fi
done
[[ -n "$port" ]] || { echo "net_pair: the master never said it listens"; exit 1; }

timeout 40 "${worker[@]}" --port "$port" | sed 's/^/worker: /' | tee "$log"
grep -q "worker: worker exit" "$log" || { echo "net_pair: the worker did not finish"; exit 1; }

results=0
while IFS= read -r -t 30 line <&3; do
  echo "master: $line"
  [[ "$line" == Result:* ]] && results=$((results + 1))
  [[ "$line" == "master exit" ]] && break
done
[[ $results -eq 10 ]] || { echo "net_pair: the master got $results results, not 10"; exit 1; }
echo "net_pair: 10 results, both sides exited"
