#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, failing on any crash.
#   bash fuzz/smoke.sh [SECONDS_PER_TARGET=25] [TARGET...]
# Uses nightly when installed, else RUSTC_BOOTSTRAP=1 on stable; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-25}
shift || true

source fuzz/common.sh
mapfile -t targets < <(fuzz_targets "$@")
"${fuzz[@]}" build -O
for t in "${targets[@]}"; do
  # Work on a scratch copy so the committed seed corpus stays small.
  work=$(mktemp -d)
  cp fuzz/corpus/"$t"/seed-* "$work"/ 2>/dev/null || true
  args=(-max_total_time="$secs" -print_final_stats=1)
  dict=$(dict_for "$t")
  [ -n "$dict" ] && args+=(-dict="$dict")
  echo "--- fuzz $t for ${secs}s"
  status=0
  "${fuzz[@]}" run -O "$t" "$work" -- "${args[@]}" > "$work.log" 2>&1 || status=$?
  grep -E 'DONE|stat::number_of_executed_units|SUMMARY' "$work.log" | tail -3
  # A failure's panic message follows its location line; keep both (messages hold no secret).
  grep -A4 -m1 'panicked' "$work.log" || true
  grep -m1 '^Base64:' "$work.log" || true
  rm -rf "$work" "$work.log"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $t FAILED (artifact under fuzz/artifacts/$t)"
    exit 1
  fi
done
echo "all ${#targets[@]} fuzz targets ran ${secs}s each without a crash"
