#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan) in build-fuzz and runs
# each for FUZZ_SECONDS seconds (default 20), starting from its seed corpus (tests/fuzz/corpus/)
# plus what earlier runs found (build-fuzz/corpus/).  Fails if any target crashes, leaks, trips a
# sanitizer or a check, or hangs; the input that did it is in build-fuzz/artifacts/.
#   scripts/fuzz.sh                        every target
#   FUZZ_SECONDS=3600 scripts/fuzz.sh url  one target, for an hour
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh
seconds=${FUZZ_SECONDS:-20}
dir=build-fuzz
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DH2POOL_FUZZ=ON -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j"$(nproc)" --target fuzzers

targets="$*"
[ -n "$targets" ] || targets=$(cd tests/fuzz && ls *.c | sed 's/\.c$//')
mkdir -p "$dir/artifacts" "$dir/logs"
failed=""
for t in $targets; do
    bin="$dir/tests/fuzz/fuzz_$t"
    if [ ! -x "$bin" ]; then
        echo "no fuzz target $t (targets: $(cd tests/fuzz && ls *.c | sed 's/\.c$//' | tr '\n' ' '))" >&2
        exit 2
    fi
    mkdir -p "$dir/corpus/$t"
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    log="$dir/logs/$t.log"
    # new inputs go to the first directory; the seeds in git stay as they are
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $dict \
        -artifact_prefix="$dir/artifacts/$t-" "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
        echo "fuzz $t: ok, $(sed -n 's/^stat::number_of_executed_units: *//p' "$log") runs in ${seconds}s," \
            "coverage $(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    else
        echo "fuzz $t: FAILED (log: $log)"
        grep -v '^#\|^INFO:\|fuzzer::\|__libc_start\|^MS:\|^stat::' "$log" | tail -30
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz targets that failed:$failed (inputs in $dir/artifacts/; rerun one with $dir/tests/fuzz/fuzz_TARGET FILE)" >&2
    exit 1
fi
