# Sourced by fuzz/smoke.sh and fuzz/coverage.sh: cargo-fuzz (installed if missing), the
# toolchain (nightly when installed, else RUSTC_BOOTSTRAP=1 on stable), the target list
# and each target's libFuzzer dictionary.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz >&2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# The targets named, or all of them.
fuzz_targets() {
  if [ $# -gt 0 ]; then printf '%s\n' "$@"; else "${fuzz[@]}" list; fi
}

dict_for() {
  case $1 in
    token_response|error_body|stored_record) echo fuzz/dict/json.dict ;;
    callback|mock_connect_form) echo fuzz/dict/form.dict ;;
    key_file) echo fuzz/dict/keyring.dict ;;
    mock_config) echo fuzz/dict/toml.dict ;;
  esac
}
