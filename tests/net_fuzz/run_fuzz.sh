#!/usr/bin/env bash
# Runs the net fuzz target briefly: run_fuzz.sh FUZZER PYTHON3 MAKE_SEEDS VECTORS SECONDS.
# Seeds come fresh from the vectors; the corpus it grows is thrown away afterwards. A finding
# fails the test and leaves the input as net-fuzz-crash-* in the working directory.
set -euo pipefail
fuzzer=$1 python=$2 make_seeds=$3 vectors=$4 seconds=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" "$make_seeds" "$vectors" "$work/seeds"
mkdir "$work/corpus"
# -max_len keeps every input within one socket buffer (see net_fuzz.cpp); one job, so the
# run costs one core for `seconds`.
"$fuzzer" -max_len=4096 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$PWD/net-fuzz-" -print_final_stats=1 "$work/corpus" "$work/seeds" 2>&1 | tail -n 12
exit "${PIPESTATUS[0]}"
