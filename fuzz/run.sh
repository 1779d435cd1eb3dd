#!/usr/bin/env bash
# Runs every fuzz target (cargo fuzz, libFuzzer + AddressSanitizer) for a while: any panic, crash, leak or hang
# fails. Corpora grow in ~/.cache across runs; fuzz/seeds holds the hand-written starting inputs.
#   fuzz/run.sh            every target for $STEWARD_FUZZ_SECONDS (default 20) seconds
#   fuzz/run.sh csv_import 300
set -euo pipefail
cd "$(dirname "$0")"

seconds=${2:-${STEWARD_FUZZ_SECONDS:-20}}
targets=${1:-"csv_import config_parse http_headers backend_responses url_origin"}
cache=${STEWARD_CACHE:-$HOME/.cache/steward-tests}
export CARGO_TARGET_DIR=${STEWARD_FUZZ_TARGET_DIR:-$HOME/.cache/steward-fuzz-target}
export PATH="$cache/cargo-fuzz/bin:$PATH"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
    echo "fuzz: no nightly toolchain here and none can be fetched; cargo fuzz needs one (sanitizers)." >&2
    echo "fuzz: the proptest stand-ins in tests/integration/fuzz.rs still ran with the test suite." >&2
    exit 0
  }
fi
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$cache/cargo-fuzz" --quiet
fi

cargo +nightly fuzz build -O
for t in $targets; do
  corpus="$cache/fuzz-corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "fuzz: $t for ${seconds}s"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  status=0
  cargo +nightly fuzz run -O "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED (the input is kept in fuzz/artifacts/$t)" >&2
    exit 1
  fi
done
