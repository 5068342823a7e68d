#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 30) from its
# committed corpus, on the stable toolchain (sanitizer off, see
# Cargo.toml). New inputs go to a scratch folder, so the committed corpus
# changes only when someone decides to add to it (`cargo fuzz cmin`).
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/.
#
#   bash fuzz/run.sh            # every target, 30 s each
#   bash fuzz/run.sh 600 resp   # one target, 10 minutes
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "corpus/$t"
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  printf '\n-- %s: %s s\n' "$t" "$seconds"
  status=0
  cargo fuzz run -s none "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${dict[@]}" >"$scratch/$t.log" 2>&1 || status=$?
  # libFuzzer's progress lines are left out; its exit status is the verdict.
  grep -E 'DONE|^Done|stat::number_of_executed_units|stat::peak_rss_mb|panicked|SUMMARY|Test unit|assert|left:|right:' \
    "$scratch/$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$scratch/$t.log"
    echo "fuzz target $t failed (exit $status); its input is in fuzz/artifacts/$t/"
    exit 1
  fi
done
