#!/usr/bin/env bash
# Builds and runs the consumer project against an mpp installed in PREFIX, the ways users
# link it: find_package(mpp) with hiredis hidden from pkg-config (libmpp alone must not
# need it), find_package(mpp COMPONENTS redis) with and without hiredis (it must fail
# saying so without), and pkg-config. Usage: tests/consumer/check.sh PREFIX
set -euo pipefail
prefix=$(realpath "$1")
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/no-pc"
no_hiredis=(env PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$work/no-pc")

"${no_hiredis[@]}" cmake -S "$src" -B "$work/plain" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/plain" >/dev/null
"$work/plain/consumer"

if [[ -f "$prefix/lib/cmake/mpp/mppRedisTargets.cmake" ]]; then
  if "${no_hiredis[@]}" cmake -S "$src" -B "$work/redis-missing" -DCMAKE_PREFIX_PATH="$prefix" \
       -DWITH_REDIS=ON >"$work/redis-missing.log" 2>&1; then
    echo "check.sh: COMPONENTS redis was found although hiredis is hidden"; exit 1
  fi
  grep -q "hiredis" "$work/redis-missing.log" ||
    { echo "check.sh: the failure does not name hiredis:"; cat "$work/redis-missing.log"; exit 1; }
  cmake -S "$src" -B "$work/redis" -DCMAKE_PREFIX_PATH="$prefix" -DWITH_REDIS=ON >/dev/null
  cmake --build "$work/redis" >/dev/null
  "$work/redis/consumer_redis"
fi

g++ -o "$work/consumer-pc" "$src/main.cpp" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs mpp)
"$work/consumer-pc"
echo "check.sh: the installed mpp links as documented"
