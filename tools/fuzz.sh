#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes (fuzz/fuzz_targets/*.rs),
# with libFuzzer (libfuzzer-sys) on the stable toolchain: the targets are built by plain
# cargo with the coverage instrumentation cargo-fuzz would add (SanitizerCoverage passes,
# --cfg fuzzing, debug assertions and overflow checks), without a sanitizer, so nothing
# but stable rustc and a C++ compiler (for libFuzzer itself) is needed.
#
#   tools/fuzz.sh smoke [SECONDS]      every target SECONDS (default 20) from its committed
#                                      seed corpus; fails on any crash (CI runs this)
#   tools/fuzz.sh long [RUNS] [TARGETS] every target (or those named, quoted) for RUNS
#                                      executions (default 10^7; at most AKTE_FUZZ_MAX_SECS,
#                                      default 3600 s, each) with a growing corpus under
#                                      fuzz/work/; prints executions and time per target
#   tools/fuzz.sh run TARGET [ARGS]    one target with libFuzzer arguments of your own
#   tools/fuzz.sh build                just build
#
# A crash leaves its input under fuzz/artifacts/TARGET/; make it a regression test (see
# fuzz/README.md) before fixing the decoder.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="${AKTE_FUZZ_TARGET_DIR:-$PWD/target}"
# What cargo-fuzz 0.13 passes for `--sanitizer none`, plus debug assertions (overflow
# checks follow them). --target keeps the flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions"
bin="$CARGO_TARGET_DIR/$triple/release"

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^akte-fuzz$'; }

build() {
  if ! command -v c++ >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  fi
  cargo build --locked --release --target "$triple" --bins
}

# Runs one target; $1 target, the rest libFuzzer arguments. The seed corpus is read-only
# to the run: new inputs go to fuzz/work/TARGET.
run() {
  local t=$1
  shift
  mkdir -p "work/$t" "artifacts/$t"
  "$bin/$t" -artifact_prefix="artifacts/$t/" -print_final_stats=1 "$@" "work/$t" "corpus/$t"
}

# The logs are written by the shell before run() makes its directories: make the parent here
# (a fresh checkout has no fuzz/work).
mkdir -p work artifacts

mode=${1:-smoke}
case "$mode" in
  build)
    build
    ;;
  smoke)
    secs=${2:-20}
    build
    for t in $(targets); do
      echo "== fuzz $t (${secs} s)"
      rc=0
      run "$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 > "work/$t.log" 2>&1 || rc=$?
      grep -E '^(Done|SUMMARY|==[0-9]+==)|panicked|deadly signal|Test unit written' "work/$t.log" || true
      if [ "$rc" -ne 0 ]; then
        echo "fuzz: $t failed (exit $rc); see fuzz/work/$t.log, the input is in fuzz/artifacts/$t/" >&2
        exit 1
      fi
    done
    echo "fuzz smoke: $(targets | wc -l) targets, ${secs} s each, no crash"
    ;;
  long)
    runs=${2:-10000000}
    # A target slower than RUNS in AKTE_FUZZ_MAX_SECS (default 3600) stops there.
    max=${AKTE_FUZZ_MAX_SECS:-3600}
    build
    for t in ${3:-$(targets)}; do
      start=$(date +%s)
      run "$t" -runs="$runs" -max_total_time="$max" -rss_limit_mb=2048 -timeout=10 > "work/$t.log" 2>&1 || {
        echo "fuzz: $t failed after $(( $(date +%s) - start )) s; see fuzz/work/$t.log and fuzz/artifacts/$t/" >&2
        exit 1
      }
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "work/$t.log")
      echo "$t: $execs executions in $(( $(date +%s) - start )) s, corpus $(ls "work/$t" | wc -l) inputs, no crash"
    done
    ;;
  run)
    t=$2
    shift 2
    build
    run "$t" "$@"
    ;;
  *)
    echo "usage: tools/fuzz.sh smoke [SECONDS] | long [RUNS] [TARGET] | run TARGET [ARGS] | build" >&2
    exit 2
    ;;
esac
