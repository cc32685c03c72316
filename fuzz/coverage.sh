#!/usr/bin/env bash
# What each fuzz target reaches: libFuzzer's coverage (`cov`, edges; `ft`, features)
# of the committed seeds alone, then after SECONDS of fuzzing from the seeds and from an
# empty corpus, with the same build (-O, address sanitizer), dictionary and flags.
#   bash fuzz/coverage.sh [SECONDS=60] [TARGET...]
# Prints a Markdown table; the figures go in the issue note or docs, with the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true

source fuzz/common.sh
mapfile -t targets < <(fuzz_targets "$@")
"${fuzz[@]}" build -O >&2

# The last "cov: N ft: M" libFuzzer printed.
last_cov() {
  grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -1 | awk '{print $2, $4}'
}

echo "| target | seeds | cov of the seeds | cov after ${secs} s from the seeds | cov after ${secs} s from empty | runs from empty |"
echo "|---|---:|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
  args=()
  dict=$(dict_for "$t")
  [ -n "$dict" ] && args+=(-dict="$dict")
  seeds=$(mktemp -d) empty=$(mktemp -d) log=$(mktemp)
  cp fuzz/corpus/"$t"/seed-* "$seeds"/ 2>/dev/null || true
  n=$(find "$seeds" -type f | wc -l)
  "${fuzz[@]}" run -O "$t" "$seeds" -- "${args[@]}" -runs=0 >"$log" 2>&1 || true
  read -r seed_cov seed_ft < <(last_cov "$log")
  "${fuzz[@]}" run -O "$t" "$seeds" -- "${args[@]}" -max_total_time="$secs" >"$log" 2>&1 || true
  read -r grown_cov grown_ft < <(last_cov "$log")
  "${fuzz[@]}" run -O "$t" "$empty" -- "${args[@]}" -max_total_time="$secs" \
    -print_final_stats=1 >"$log" 2>&1 || true
  read -r empty_cov empty_ft < <(last_cov "$log")
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  echo "| \`$t\` | $n | $seed_cov (ft $seed_ft) | $grown_cov (ft $grown_ft) | $empty_cov (ft $empty_ft) | $runs |"
  rm -rf "$seeds" "$empty" "$log"
done
