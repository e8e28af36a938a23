#!/bin/sh
# Builds h2pool and runs the whole test suite (unit + integration). SANITIZE=1: ASan + UBSan build.
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh
if [ "${SANITIZE:-0}" = 1 ]; then dir=build-asan; opts="-DH2POOL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"; else dir=build; opts="-DCMAKE_BUILD_TYPE=RelWithDebInfo"; fi
cmake -S . -B "$dir" $opts >/dev/null
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest --output-on-failure -j2 "$@"
