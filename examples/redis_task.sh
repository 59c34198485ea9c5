#!/bin/sh
# Runs the distributed task example over Redis as ctest does: one master and two
# workers on the server named by MPP_REDIS_URL, under a key prefix of their own.
#   redis_task.sh MASTER WORKER
if [ -z "${MPP_REDIS_URL:-}" ]; then
  echo "SKIPPED: MPP_REDIS_URL is unset; ./tools/test starts a redis-server and sets it"
  exit 0
fi
master=$1 worker=$2 prefix="mpp-example:$$:"
"$worker" --prefix "$prefix" --tasks 5 --timeout 30 & w1=$!
"$worker" --prefix "$prefix" --tasks 5 --timeout 30 & w2=$!
"$master" --prefix "$prefix" --tasks 10 --timeout 60; m=$?
wait $w1; s1=$?
wait $w2; s2=$?
if [ $m -eq 0 ] && [ $s1 -eq 0 ] && [ $s2 -eq 0 ]; then
  echo "redis task example: master and both workers exited 0"
else
  echo "redis task example FAILED: master $m, workers $s1 $s2"
  exit 1
fi
