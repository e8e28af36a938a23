#!/bin/sh
# One command: installs the peers (nginx, h2o) and load tools if missing, builds h2pool in
# Release, and runs h2pool, nginx and h2o side by side on the same backends (bench/bench.py);
# php-fpm and DokuWiki (Debian packages) are the peers' default PHP and the real PHP page.
# Usage: bench/run.sh [--rounds N] [--duration S] [--only SCENARIO,...]
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh
missing=""
for p in nginx h2o wrk nghttp2-client php-fpm dokuwiki; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >/dev/null
cmake --build build-release -j"$(nproc)" --target h2pool hello_fcgi bare_h2o
exec python3 bench/bench.py --h2pool build-release/h2pool --hello build-release/tests/hello_fcgi --bare build-release/bare_h2o "$@"
