#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, failing on any crash.
#   bash fuzz/smoke.sh [SECONDS_PER_TARGET=25] [TARGET...]
# Uses nightly when installed, else RUSTC_BOOTSTRAP=1 on stable; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-25}
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

dict_for() {
  case $1 in
    token_response|error_body|stored_record) echo fuzz/dict/json.dict ;;
    callback|mock_connect_form) echo fuzz/dict/form.dict ;;
    key_file) echo fuzz/dict/keyring.dict ;;
    mock_config) echo fuzz/dict/toml.dict ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi
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
