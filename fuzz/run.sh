#!/usr/bin/env bash
# Fuzzes the parsers that take outside input, each for SECONDS (libFuzzer, through cargo fuzz).
#   fuzz/run.sh SECONDS [TARGET ...]      targets: connection_request notification allowlist_item principal
# A crash stops the run with a non-zero exit; the input that crashed is kept in fuzz/artifacts/<target>/
# (replay it with `cargo fuzz run <target> <file>` from fuzz/, RUSTC_BOOTSTRAP=1).
# The corpus grows in target/fuzz/corpus/<target>, seeded from fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(connection_request notification allowlist_item principal)

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing: run make setup" >&2; exit 1; }
# cargo fuzz passes -Z flags (sanitizer coverage); the machine's toolchain is stable, which accepts them
# with RUSTC_BOOTSTRAP. The fuzz crate never uses unstable language features.
export RUSTC_BOOTSTRAP=1
target_dir=../target/fuzz
mkdir -p "$target_dir/logs"
cargo fuzz build --target-dir "$target_dir"
for t in "${targets[@]}"; do
  corpus="$target_dir/corpus/$t"
  log="$target_dir/logs/$t.log"
  mkdir -p "$corpus" "seeds/$t"
  if cargo fuzz run --target-dir "$target_dir" "$t" "$corpus" "seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus_size=$(find "$corpus" -type f | wc -l)
    echo "fuzz: $t: ${runs:-?} inputs in ${seconds}s, no failure (corpus: $corpus_size inputs)"
  else
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED; the crashing input is in fuzz/artifacts/$t/ (full log: target/fuzz/logs/$t.log)" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no failure"
