#!/bin/sh
# Installs what is missing, builds h2pool, and serves the sample conf.d on http://localhost:8080.
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
# Nothing that serves runs as root: the front end becomes www-data (server.user) and the
# workers nobody, so stage the sample where both can read it.
stage="${TMPDIR:-/tmp}/h2pool-sample"
rm -rf "$stage"
mkdir -p "$stage/apps"
cp -r conf.d www "$stage/"
cp build/tests/hello_fcgi "$stage/apps/"
chmod -R a+rX "$stage"
echo "h2pool: serving $stage/conf.d on http://localhost:8080 (Ctrl-C stops it)"
exec build/h2pool -c "$stage/conf.d"
