#!/bin/sh
# Installs what h2pool needs to build and test on Debian 12 (run as root; a no-op when present);
# clang and its libFuzzer runtime (libclang-rt-14-dev) are for scripts/fuzz.sh.
set -e
PACKAGES="build-essential cmake pkg-config clang-format libh2o-evloop-dev libssl-dev libyaml-dev libjansson-dev libpcre2-dev
  libcmocka-dev libfcgi-dev libbrotli-dev zlib1g-dev brotli libcrypt-dev php-cgi dokuwiki curl nghttp2-client python3 openssl procps goaccess
  clang libclang-rt-14-dev"
# promtool (prometheus) and chromium check /metrics and draw the dashboard in two tests that are
# skipped without them: 130 MB more to fetch, so only on request
[ "${H2POOL_TEST_EXTRAS:-0}" = 1 ] && PACKAGES="$PACKAGES prometheus chromium"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$missing (run: sudo apt-get install -y$missing)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
