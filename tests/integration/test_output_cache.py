"""output_cache module (`modules.output_cache`, `server.cache`): FastCGI, CGI and static
responses kept in memory per rule, answered before any pool is touched, with HTTP's rules
(Cache-Control, Vary, cookies, Authorization, HEAD, 304, Age), LRU eviction at max_memory,
collapsed forwarding (many concurrent misses, one worker request) and invalidation on reload and
when a static file changes.

The PHP app counts every request it serves in a file: a hit is a request the count does not see."""
import fcntl
import gzip
import http.client
import os
import re
import signal
import subprocess
import threading
import time
import unittest
import urllib.parse

import h2ptest
from h2ptest import Server, curl, raw_request

CONF = """
server:
  threads: 2
  cache: {max_memory: 64KiB, max_entry: 32KiB}
pools:
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 4
    {worker_user}
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: {dir}/www
    http2: true
    handlers:
      - {path: "*.php", pool: php}
      - {path: "/cgi-bin/*.cgi", cgi: true}
    modules:
      compression: {dynamic: true, static: true, types: [text/*], min_size: 256}
      output_cache:
        - {path: "*.php", duration: 60s, vary_by_query: true}
        - {path: "*.txt", duration: 60s}
        - {path: "/cgi-bin/*", duration: 60s}
    locations:
      /noquery:
        modules:
          output_cache: [{path: "*.php", duration: 60s}]
      /lang:
        modules:
          output_cache: [{path: "*.php", duration: 60s, vary_by_headers: [accept-language]}]
      /short:
        modules:
          output_cache: [{path: "*.php", duration: 1s, vary_by_query: true}]
      /auth:
        modules:
          authentication: {anonymous: true, basic: {users_file: ../users.htpasswd}}
      /private:
        modules:
          authentication: {anonymous: false, basic: {users_file: ../users.htpasswd}}
      /off:
        modules:
          output_cache: {enabled: false}
"""

APP = r"""<?php
$fp = fopen(__DIR__ . '/COUNTFILE', 'c+');
flock($fp, LOCK_EX);
$n = (int)stream_get_contents($fp) + 1;
ftruncate($fp, 0); rewind($fp); fwrite($fp, (string)$n); fflush($fp);
flock($fp, LOCK_UN); fclose($fp);
if (isset($_GET['sleep'])) usleep((int)$_GET['sleep'] * 1000);
if (isset($_GET['cc'])) header('Cache-Control: ' . $_GET['cc']);
if (isset($_GET['vary'])) header('Vary: ' . $_GET['vary']);
if (isset($_GET['cookie'])) setcookie('session', 'secret-' . $n);
if (isset($_GET['status'])) http_response_code((int)$_GET['status']);
header('Content-Type: text/plain');
header('ETag: "v1"');
header('Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT');
echo "n=$n user=" . ($_SERVER['REMOTE_USER'] ?? '-') . " lang=" . ($_SERVER['HTTP_ACCEPT_LANGUAGE'] ?? '-') .
     " query=" . ($_SERVER['QUERY_STRING'] ?? '') . "\n";
if (isset($_GET['big'])) echo str_repeat('x', (int)$_GET['big']);
"""

CGI = """#!/bin/sh
n=$(cat "$(dirname "$0")/../../cgi-count" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$(dirname "$0")/../../cgi-count"
printf 'Content-Type: text/plain\\r\\n\\r\\ncgi n=%s\\n' "$n"
"""


def app(count_file="../count"):
    return APP.replace("COUNTFILE", count_file)


FILES = {
    "www/c.php": app("../count"),
    "www/noquery/c.php": app("../../count"),
    "www/lang/c.php": app("../../count"),
    "www/short/c.php": app("../../count"),
    "www/auth/c.php": app("../../count"),
    "www/private/c.php": app("../../count"),
    "www/off/c.php": app("../../count"),
    "www/page.txt": "static page, first version\n" * 20,
    "count": "0",
    "cgi-count": "0",
}


def openssl_hash(password):
    return subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True, check=True).stdout.strip()


PROTOCOLS = [("http/1.1", []), ("h2", ["--http2-prior-knowledge"])]


class OutputCacheTest(h2ptest.ServerTestCase):
    CONF, FILES = CONF, FILES

    @classmethod
    def prepare(cls, s):
        s.write("users.htpasswd", f"alice:{openssl_hash('alice-pw')}\nbob:{openssl_hash('bob-pw')}\n")
        s.write("www/cgi-bin/count.cgi", CGI, mode=0o755)
        os.chmod(s.path("www"), 0o755)

    def count(self):
        with open(self.server.path("count")) as f:
            return int(f.read() or 0)

    def assertHit(self, path, *args, body=None):
        before = self.count()
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.count(), before, f"{path} reached the worker: {r}")
        self.assertIsNotNone(r.header("age"), r)
        if body is not None:
            self.assertEqual(r.body, body)
        return r

    def assertMiss(self, path, *args):
        before = self.count()
        r = self.get(path, *args)
        self.assertEqual(self.count(), before + 1, f"{path} did not reach the worker: {r}")
        self.assertIsNone(r.header("age"), r)
        return r

    # ---- hit, miss, expiry

    def test_hit_after_miss(self):
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                path = f"/c.php?t=hit-{name}"
                first = self.assertMiss(path, *proto)
                self.assertEqual(first.status, 200, first)
                for _ in range(3):
                    r = self.assertHit(path, *proto, body=first.body)
                    self.assertEqual(r.header("etag"), '"v1"', r)
                    self.assertEqual(r.header("content-type"), "text/plain;charset=UTF-8", r)
                # the other protocol gets the same entry
                other = PROTOCOLS[1][1] if name == "http/1.1" else []
                self.assertHit(path, *other, body=first.body)

    def test_expiry(self):
        first = self.assertMiss("/short/c.php?t=expiry")
        self.assertHit("/short/c.php?t=expiry", body=first.body)
        time.sleep(1.3)  # the rule's duration is 1s
        self.assertMiss("/short/c.php?t=expiry")

    def test_worker_max_age_shortens_the_duration(self):
        for cc in ["max-age=1", "public,%20s-maxage=1,%20max-age=100"]:
            with self.subTest(cc=cc):
                path = f"/c.php?cc={cc}"
                self.assertMiss(path)
                self.assertHit(path)
                time.sleep(1.3)
                self.assertMiss(path)

    def test_uncacheable_responses_are_not_stored(self):
        for query in ["cc=no-store", "cc=private", "cc=no-cache", "cc=max-age=0", "cc=public,%20no-store",
                      "cookie=1", "vary=*", "status=404", "status=500", "status=201"]:
            with self.subTest(query=query):
                path = f"/c.php?{query}"
                self.assertMiss(path)
                self.assertMiss(path)

    def test_set_cookie_never_reaches_another_client(self):
        r1 = self.assertMiss("/c.php?cookie=2")
        r2 = self.assertMiss("/c.php?cookie=2")
        self.assertNotEqual(r1.header("set-cookie"), r2.header("set-cookie"))

    def test_other_methods_and_ranges_go_to_the_worker(self):
        path = "/c.php?t=methods"
        self.assertMiss(path)
        before = self.count()
        r = self.get(path, "-X", "POST", "--data-binary", "x")
        self.assertEqual(self.count(), before + 1, r)
        self.assertIsNone(r.header("age"), r)
        self.assertMiss(path, "-H", "Range: bytes=0-3")
        self.assertHit(path)

    # ---- the key: query, headers, coding

    def test_vary_by_query(self):
        a = self.assertMiss("/c.php?t=q&x=1")
        b = self.assertMiss("/c.php?t=q&x=2")
        self.assertNotEqual(a.body, b.body)
        self.assertHit("/c.php?t=q&x=1", body=a.body)
        self.assertHit("/c.php?t=q&x=2", body=b.body)

    def test_query_ignored_without_vary_by_query(self):
        a = self.assertMiss("/noquery/c.php?x=1")
        self.assertHit("/noquery/c.php?x=2", body=a.body)
        self.assertHit("/noquery/c.php", body=a.body)

    def test_vary_by_headers(self):
        en = self.assertMiss("/lang/c.php", "-H", "Accept-Language: en")
        de = self.assertMiss("/lang/c.php", "-H", "Accept-Language: de")
        none = self.assertMiss("/lang/c.php")
        self.assertIn(b"lang=en", en.body)
        self.assertHit("/lang/c.php", "-H", "Accept-Language: en", body=en.body)
        self.assertHit("/lang/c.php", "-H", "Accept-Language: de", body=de.body)
        self.assertHit("/lang/c.php", body=none.body)

    def test_worker_vary_is_honoured(self):
        path = "/c.php?vary=Accept-Language"
        en = self.assertMiss(path, "-H", "Accept-Language: en")
        self.assertHit(path, "-H", "Accept-Language: en", body=en.body)
        de = self.assertMiss(path, "-H", "Accept-Language: de")  # never the English page
        self.assertIn(b"lang=de", de.body)
        self.assertHit(path, "-H", "Accept-Language: de", body=de.body)

    def test_one_entry_per_content_coding(self):
        path = "/c.php?t=coding&big=3000"
        plain = self.assertMiss(path)
        gz = self.assertMiss(path, "-H", "Accept-Encoding: gzip")
        self.assertEqual(gz.header("content-encoding"), "gzip", gz)
        self.assertTrue(gzip.decompress(gz.body).startswith(b"n="), gz)
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                r = self.assertHit(path, "-H", "Accept-Encoding: gzip", *proto, body=gz.body)
                self.assertEqual(r.header("content-encoding"), "gzip", r)
                self.assertIn("accept-encoding", r.header("vary").lower(), r)
                r = self.assertHit(path, *proto, body=plain.body)
                self.assertIsNone(r.header("content-encoding"), r)

    # ---- Authorization

    def test_authorization_never_shared(self):
        """A response to credentials is never stored, and a request with credentials never gets a stored one."""
        anon = self.assertMiss("/auth/c.php?t=auth")
        self.assertIn(b"user=-", anon.body)
        self.assertHit("/auth/c.php?t=auth", body=anon.body)
        for name, proto in PROTOCOLS:
            for user in ["alice", "bob"]:
                with self.subTest(proto=name, user=user):
                    for _ in range(2):
                        r = self.assertMiss("/auth/c.php?t=auth", "-u", f"{user}:{user}-pw", *proto)
                        self.assertIn(f"user={user}".encode(), r.body)
        # several spellings of credentials: none is answered from the cache, none is stored
        for header in ["Authorization: Basic " + __import__("base64").b64encode(b"alice:alice-pw").decode(),
                       "authorization: Basic " + __import__("base64").b64encode(b"bob:bob-pw").decode(),
                       "AUTHORIZATION: Basic " + __import__("base64").b64encode(b"alice:alice-pw").decode()]:
            with self.subTest(header=header[:20]):
                r = self.assertMiss("/auth/c.php?t=auth", "-H", header)
                self.assertNotIn(b"user=-", r.body)
        self.assertHit("/auth/c.php?t=auth", body=anon.body)  # the anonymous entry is still the anonymous page

    def test_scope_requiring_authentication_is_never_cached(self):
        r = self.get("/private/c.php?t=p")
        self.assertEqual(r.status, 401, r)
        for _ in range(2):
            r = self.assertMiss("/private/c.php?t=p", "-u", "alice:alice-pw")
            self.assertIn(b"user=alice", r.body)
        self.assertEqual(self.get("/private/c.php?t=p").status, 401)

    # ---- HEAD and conditional requests

    def test_head_answered_from_the_get_entry(self):
        path = "/c.php?t=head"
        first = self.assertMiss(path)
        before = self.count()
        host = f"127.0.0.1:{self.server.port()}"  # (the Host is part of the key)
        out = raw_request(self.server.port(), f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertEqual(self.count(), before)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        self.assertIn(f"content-length: {len(first.body)}".encode(), head.lower())
        self.assertIn(b"age:", head.lower())
        self.assertEqual(body, b"")

    def test_head_miss_is_not_stored(self):
        path = "/c.php?t=headmiss"
        before = self.count()
        r = self.get(path, "-I")
        self.assertEqual(self.count(), before + 1, r)
        self.assertMiss(path)

    def test_304_from_the_entry(self):
        path = "/c.php?t=304"
        self.assertMiss(path)
        for name, proto in PROTOCOLS:
            for header in ['If-None-Match: "v1"', 'If-None-Match: W/"v1"', 'If-None-Match: "x", "v1"', "If-None-Match: *",
                           "If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT",
                           "If-Modified-Since: Tue, 02 Jan 2024 00:00:00 GMT"]:
                with self.subTest(proto=name, header=header):
                    before = self.count()
                    r = self.get(path, "-H", header, *proto)
                    self.assertEqual(r.status, 304, r)
                    self.assertEqual(r.body, b"")
                    self.assertEqual(r.header("etag"), '"v1"', r)
                    self.assertIsNotNone(r.header("age"), r)
                    self.assertEqual(self.count(), before)
        for header in ['If-None-Match: "other"', "If-Modified-Since: Sun, 31 Dec 2023 00:00:00 GMT"]:
            with self.subTest(header=header):
                r = self.assertHit(path, "-H", header)
                self.assertEqual(r.status, 200, r)

    # ---- static files and CGI

    def test_static_file_cached_until_it_changes(self):
        first = self.get("/page.txt")
        self.assertIsNone(first.header("age"), first)
        r = self.get("/page.txt")
        self.assertIsNotNone(r.header("age"), r)
        self.assertEqual(r.body, first.body)
        self.server.write("www/page.txt", "static page, second version\n" * 20)
        later = time.time() + 5
        os.utime(self.server.path("www/page.txt"), (later, later))
        r = self.get("/page.txt")
        self.assertEqual(r.body, b"static page, second version\n" * 20)
        self.assertIsNone(r.header("age"), r)
        self.assertIsNotNone(self.get("/page.txt").header("age"))

    def test_cgi_cached(self):
        first = self.get("/cgi-bin/count.cgi")
        self.assertEqual(first.status, 200, first)
        self.assertIsNone(first.header("age"), first)
        r = self.get("/cgi-bin/count.cgi")
        self.assertEqual(r.body, first.body)
        self.assertIsNotNone(r.header("age"), r)

    def test_disabled_scope(self):
        self.assertMiss("/off/c.php")
        self.assertMiss("/off/c.php")

    # ---- collapsed forwarding

    def test_concurrent_misses_one_worker_request(self):
        path = "/c.php?t=collapse&sleep=600"
        before = self.count()
        port = self.server.port()
        bodies, errors = [], []

        def fetch():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path)
                resp = conn.getresponse()
                bodies.append((resp.status, resp.read()))
                conn.close()
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=fetch) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(bodies), 100)
        self.assertEqual(self.count(), before + 1)
        self.assertEqual({b for _, b in bodies}.__len__(), 1, bodies[:3])
        self.assertEqual({s for s, _ in bodies}, {200})

    def test_concurrent_misses_over_h2(self):
        path = "/c.php?t=collapse-h2&sleep=600"
        before = self.count()
        out = subprocess.run(["h2load", "-n", "60", "-c", "3", "-m", "20", self.server.url(path)],
                             capture_output=True, text=True, timeout=60).stdout
        self.assertIn("60 succeeded", out, out)
        self.assertEqual(self.count(), before + 1, out)

    def test_uncacheable_concurrent_misses_all_reach_the_worker(self):
        path = "/c.php?t=collapse-nostore&sleep=300&cc=no-store"
        before = self.count()
        out = subprocess.run(["h2load", "-n", "8", "-c", "8", "-m", "1", "--h1", self.server.url(path)],
                             capture_output=True, text=True, timeout=60).stdout
        self.assertIn("8 succeeded", out, out)
        self.assertEqual(self.count(), before + 8, out)


class CacheFlushTest(h2ptest.ServerTestCase):
    """`h2pool ctl cache flush [SITE [PATH]]` drops entries: all, a site's, a path's, paths by prefix."""
    CONF = CONF.replace("server:\n  threads: 2\n", "server:\n  threads: 2\n  control_socket: {dir}/ctl.sock\n")
    FILES = FILES
    prepare, count, assertHit, assertMiss = OutputCacheTest.prepare, OutputCacheTest.count, OutputCacheTest.assertHit, OutputCacheTest.assertMiss

    def ctl(self, *args):
        from test_ctl import ctl
        return ctl(self.server, "cache", "flush", *args)

    def test_flush(self):
        for path in ("/c.php?t=f1", "/c.php?t=f2"):
            self.assertMiss(path)
            self.assertHit(path)
        r = self.ctl("main", "/other.php")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "cache flushed: 0 entries"), r)
        self.assertHit("/c.php?t=f1")
        r = self.ctl("main", "/c.php")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("cache flushed: 2 entries", r.stdout)
        self.assertMiss("/c.php?t=f1")
        self.assertHit("/c.php?t=f1")
        self.assertEqual(self.ctl("main", "/c*").returncode, 0)
        self.assertMiss("/c.php?t=f1")
        self.assertEqual(self.ctl("main").returncode, 0)
        self.assertMiss("/c.php?t=f1")
        self.assertEqual(self.ctl().returncode, 0)
        self.assertMiss("/c.php?t=f1")

    def test_bad_flushes(self):
        r = self.ctl("nosuch")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn('no site "nosuch"', r.stderr)
        r = self.ctl("main", "relative")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("starts with '/'", r.stderr)
        from test_ctl import ctl
        for args in (("cache",), ("cache", "drop"), ("cache", "flush", "a", "/b", "c")):
            r = ctl(self.server, *args)
            self.assertEqual(r.returncode, 2, (args, r))


STALE_CONF = """
server:
  threads: 2
  control_socket: {dir}/ctl.sock
  management: 127.0.0.1:{port:mgmt}
pools:
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 4
    {worker_user}
  other:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 2
    {worker_user}
  crashy:
    command: [{apps}/crash_fcgi]
    max_processes: 2
    rapid_fail: {max_crashes: 2, interval: 1m}
    {worker_user}
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}", "https://127.0.0.1:{port:https}"]
    tls: {certificate: {dir}/certs/s.test.pem, key: {dir}/certs/s.test.key}
    root: {dir}/www
    http2: true
    handlers:
      - {path: "*.php", pool: php}
      - {path: "*.phtml", pool: other}
      - {path: "/crashy/*", pool: crashy}
    modules:
      output_cache:
        - {path: "/swr/*", duration: 1s, vary_by_query: true, stale_while_revalidate: 60s}
        - {path: "/sie/*", duration: 1s, vary_by_query: true, stale_if_error: 60s}
        - {path: "/sie-short/*", duration: 1s, vary_by_query: true, stale_if_error: 3s}
        - {path: "/plain/*", duration: 1s, vary_by_query: true}
        - {path: "/guarded/*", duration: 1s, stale_while_revalidate: 60s, stale_if_error: 60s}
        - {path: "*.phtml", duration: 1s, stale_if_error: 60s}
        - {path: "/crashy/*", duration: 1s, stale_if_error: 60s}
    locations:
      /guarded:
        modules:
          request_filtering: {verbs: {allow: [GET]}, max_query_string: 8}
"""

# Counts its requests in state/count-<t> (t: the query's, each test its own: a refresh another test
# left running counts elsewhere); blocks while the file `block` exists (after creating `blocked`);
# answers the status written in `fail` when that file exists.
STALE_APP = r"""<?php
$state = __DIR__ . '/../../state';
$t = preg_replace('/[^a-z0-9-]/', '', $_GET['t'] ?? 'default');
$fp = fopen("$state/count-$t", 'c+');
flock($fp, LOCK_EX);
$n = (int)stream_get_contents($fp) + 1;
ftruncate($fp, 0); rewind($fp); fwrite($fp, (string)$n); fflush($fp);
flock($fp, LOCK_UN); fclose($fp);
if (file_exists("$state/block")) {
    touch("$state/blocked");
    while (file_exists("$state/block")) usleep(10000);
}
if (file_exists("$state/fail")) {
    http_response_code((int)file_get_contents("$state/fail"));
    echo "application error\n";
    exit;
}
if (isset($_GET['cc'])) header('Cache-Control: ' . $_GET['cc']);
if (isset($_GET['vary'])) header('Vary: ' . $_GET['vary']);
header('Content-Type: text/plain');
echo "n=$n role=" . ($_SERVER['HTTP_X_ROLE'] ?? '-') . " user=" . ($_SERVER['PHP_AUTH_USER'] ?? '-') . "\n";
"""

STALE_FILES = {f"www/{d}/s.php": STALE_APP for d in ["swr", "sie", "sie-short", "plain", "guarded"]}
STALE_FILES["www/sie/s.phtml"] = STALE_APP


class StaleTest(h2ptest.ServerTestCase):
    """Stale entries (RFC 5861): stale_while_revalidate answers an expired entry at once while one
    background request refreshes it; stale_if_error answers it instead of a 502/503/504.  The app
    blocks on a file the test removes, so "answered while the worker is busy" needs no timing."""
    CONF, FILES = STALE_CONF, STALE_FILES

    @classmethod
    def prepare(cls, s):
        os.makedirs(s.path("certs"))
        h2ptest.make_cert(s.path("certs"), "s.test")
        os.makedirs(s.path("state"))
        os.chmod(s.path("state"), 0o777)

    def setUp(self):
        for name in ["block", "blocked", "fail"]:
            if os.path.exists(self.server.path(f"state/{name}")):
                os.unlink(self.server.path(f"state/{name}"))
        self.addCleanup(self.release)

    def release(self):
        for name in ["block", "fail"]:
            if os.path.exists(self.server.path(f"state/{name}")):
                os.unlink(self.server.path(f"state/{name}"))

    def count(self, path):
        """Requests the worker got for path's `t` (read under the app's lock: it rewrites the file)."""
        t = re.sub(r"[^a-z0-9-]", "", urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("t", ["default"])[0])
        try:
            with open(self.server.path(f"state/count-{t}")) as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    def block(self):
        self.server.write("state/block", "")

    def fail_with(self, status):
        self.server.write("state/fail", str(status))

    def blocked(self):
        return os.path.exists(self.server.path("state/blocked"))

    def fresh(self, path, *args):
        """A miss that stores the entry, then waits out its 1 s duration (Age counts whole seconds)."""
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("age"), r)  # from the application
        time.sleep(1.1)
        return r

    def assertStale(self, path, *args, body):
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        self.assertGreaterEqual(int(r.header("age")), 1, r)
        self.assertIsNone(r.header("warning"), r)
        return r

    # ---- stale-while-revalidate

    def test_stale_answered_while_the_refresh_waits_on_the_worker(self):
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                path = f"/swr/s.php?t=slow-{name}"
                first = self.fresh(path, *proto)
                base = self.count(path)
                self.block()
                self.assertStale(path, *proto, body=first.body)  # while the worker is blocked
                h2ptest.wait_until(self.blocked, what="the refresh to reach the worker")
                self.assertTrue(os.path.exists(self.server.path("state/block")))
                self.assertStale(path, *proto, body=first.body)  # still, and no second refresh
                self.assertEqual(self.count(path), base + 1, "one refresh")
                self.release()
                # the refresh's response replaces the entry (a loaded machine may see it expire again
                # and answered stale: the same body)
                refreshed = f"n={base + 1} role=- user=-\n".encode()
                h2ptest.wait_until(lambda: self.get(path, *proto).body == refreshed, what="the refreshed entry")
                os.unlink(self.server.path("state/blocked"))

    def test_refresh_over_https(self):
        """The refresh has no TLS connection of its own: it passes the client-certificate policy check
        as the request it copies did (else it would be a 421, and the entry never refreshed)."""
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                url = self.server.url(f"/swr/s.php?t=tls-{name}", name="https", scheme="https")
                first = curl(url, "-k", *proto)
                self.assertEqual(first.status, 200, first)
                time.sleep(1.1)
                r = curl(url, "-k", *proto)
                self.assertEqual((r.status, r.body), (200, first.body), r)
                self.assertIsNotNone(r.header("age"))
                h2ptest.wait_until(lambda: curl(url, "-k", *proto).body != first.body, what="the refreshed entry")

    def test_one_refresh_for_many_concurrent_stale_hits(self):
        path = "/swr/s.php?t=many"
        first = self.fresh(path)
        base = self.count(path)
        self.block()
        for proto in (["--h1"], []):  # HTTP/1.1 and h2 (h2load speaks h2c with prior knowledge)
            out = subprocess.run(["h2load", "-n", "60", "-c", "6", "-m", "4", *proto, self.server.url(path)],
                                 capture_output=True, text=True, timeout=60)
            self.assertIn("60 succeeded", out.stdout, out.stdout)
            self.assertIn("status codes: 60 2xx", out.stdout, out.stdout)
        h2ptest.wait_until(self.blocked, what="the refresh to reach the worker")
        self.assertEqual(self.count(path), base + 1, "one refresh for 120 stale answers")
        self.release()
        refreshed = f"n={base + 1} role=- user=-\n".encode()
        h2ptest.wait_until(lambda: self.get(path).body == refreshed, what="the refreshed entry")

    def test_failed_refresh_keeps_the_stale_entry(self):
        for status in [500, 503]:
            with self.subTest(status=status):
                path = f"/swr/s.php?t=failed-{status}"
                first = self.fresh(path)
                base = self.count(path)
                self.fail_with(status)
                self.assertStale(path, body=first.body)
                h2ptest.wait_until(lambda: self.count(path) == base + 1, what="the refresh")
                # the failed refresh stored nothing: the stale entry is answered until the next refresh
                # starts (which it can only once the first one ended)
                h2ptest.wait_until(lambda: self.assertStale(path, body=first.body) and self.count(path) >= base + 2,
                                   what="a second refresh")
                self.release()
                h2ptest.wait_until(lambda: self.get(path).body != first.body, what="the refreshed entry")

    def test_counters(self):
        from test_management import metrics_of, sample, status_of
        before = status_of(self.server)["output_cache"]
        path = "/swr/s.php?t=counted"
        first = self.fresh(path)
        self.block()
        for _ in range(3):
            self.assertStale(path, body=first.body)
        during = status_of(self.server)["output_cache"]  # (the refresh is blocked: no other stale hit yet)
        self.assertEqual(during["stale_hits_total"] - before["stale_hits_total"], 3)
        self.assertEqual(during["refreshes_total"] - before["refreshes_total"], 1)
        self.release()
        h2ptest.wait_until(lambda: self.get(path).body != first.body, what="the refreshed entry")
        path = "/sie/s.php?t=counted"
        first = self.fresh(path)
        self.fail_with(502)
        self.assertStale(path, body=first.body)
        after = status_of(self.server)["output_cache"]
        self.assertEqual(after["stale_if_error_total"] - before["stale_if_error_total"], 1)
        text = metrics_of(self.server)
        self.assertEqual(sample(text, "h2pool_output_cache_stale_hits_total"), after["stale_hits_total"])
        self.assertEqual(sample(text, "h2pool_output_cache_stale_if_error_total"), after["stale_if_error_total"])
        self.assertEqual(sample(text, "h2pool_output_cache_refreshes_total"), after["refreshes_total"])
        self.assertGreater(sample(text, "h2pool_output_cache_entries"), 0)

    def test_without_a_bound_an_expired_entry_is_a_miss(self):
        path = "/plain/s.php?t=plain"
        self.fresh(path)
        self.fail_with(503)
        self.assertEqual(self.get(path).status, 503)

    def test_cache_control_stale_while_revalidate(self):
        # the rule of /plain has no bounds: the worker's directive gives one
        path = "/plain/s.php?cc=max-age=1,+stale-while-revalidate=60"
        first = self.fresh(path)
        self.block()
        self.assertStale(path, body=first.body)
        h2ptest.wait_until(self.blocked, what="the refresh")
        self.release()
        # must-revalidate forbids it, even with the rule's bound
        path = "/swr/s.php?cc=must-revalidate"
        self.fresh(path)
        self.fail_with(502)
        self.assertEqual(self.get(path).status, 502)

    # ---- stale-if-error

    def test_stale_if_error_on_a_worker_error(self):
        for name, proto in PROTOCOLS:
            for status in [502, 503, 504]:
                with self.subTest(proto=name, status=status):
                    path = f"/sie/s.php?t=err-{name}-{status}"
                    first = self.fresh(path, *proto)
                    base = self.count(path)
                    self.fail_with(status)
                    self.assertStale(path, *proto, body=first.body)
                    self.assertEqual(self.count(path), base + 1)  # it did ask the worker first
                    head = self.get(path, "-I", *proto)  # (curl -I prints the head as the body)
                    self.assertEqual(head.status, 200, head)
                    self.assertIsNotNone(head.header("age"), head)
                    self.release()
                    r = self.get(path, *proto)
                    self.assertNotEqual(r.body, first.body)
                    self.assertIsNone(r.header("age"))

    def test_other_errors_are_not_hidden(self):
        for status in [500, 404, 403]:
            with self.subTest(status=status):
                path = f"/sie/s.php?t=other-{status}"
                self.fresh(path)
                self.fail_with(status)
                self.assertEqual(self.get(path).status, status)
                self.release()

    def test_stale_if_error_bound(self):
        path = "/sie-short/s.php?t=bound"
        first = self.fresh(path)
        self.fail_with(503)
        self.assertStale(path, body=first.body)  # expired by less than 3 s
        time.sleep(3.0)
        self.assertEqual(self.get(path).status, 503)  # beyond the bound: the error

    def test_cache_control_stale_if_error(self):
        path = "/plain/s.php?cc=max-age=1,+stale-if-error=60"
        first = self.fresh(path)
        self.fail_with(504)
        self.assertStale(path, body=first.body)

    def test_stale_if_error_on_a_stopped_pool(self):
        from test_ctl import ctl
        first = self.fresh("/sie/s.phtml")
        r = ctl(self.server, "stop", "pool", "other")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(ctl, self.server, "start", "pool", "other")
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                self.assertStale("/sie/s.phtml", *proto, body=first.body)
        self.assertEqual(self.get("/sie/s.phtml?t=never-stored").status, 503)  # no entry: the pool's 503
        self.assertEqual(ctl(self.server, "start", "pool", "other").returncode, 0)

    def test_stale_if_error_on_crashes_and_rapid_fail(self):
        from test_ctl import ctl
        first = self.fresh("/crashy/x")  # (the key has no query: "?crash" shares the entry)
        self.assertIn(b"ok pid=", first.body)
        self.addCleanup(ctl, self.server, "start", "pool", "crashy")
        for _ in range(2):  # the worker dies mid-response (502), twice: rapid-fail protection stops the pool
            self.assertStale("/crashy/x?crash", body=first.body)
        h2ptest.log_shows(self.server, "rapid-fail")
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                self.assertStale("/crashy/x", *proto, body=first.body)  # instead of the stopped pool's 503
        self.assertEqual(self.get("/crashy/never-stored").status, 503)
        self.assertEqual(ctl(self.server, "start", "pool", "crashy").returncode, 0)

    # ---- a stale entry goes only where a fresh one would

    def test_stale_never_answers_a_request_the_fresh_path_denies(self):
        path = "/guarded/s.php"
        first = self.fresh(path)
        self.fail_with(503)
        self.block()
        # request_filtering runs before the lookup: a long query string (the key has no query), a
        # verb not allowed (HEAD is answered from the GET entry elsewhere)
        for args in [["?aaaaaaaaaaaaaaaa"], ["?a=1&b=2&c=3"], ["", "-I"], ["", "-X", "HEAD"]]:
            r = self.get(path + args[0], *args[1:])
            self.assertNotEqual(r.status, 200, (args, r))
            self.assertIsNone(r.header("age"), (args, r))
        # credentials never look up: the worker answers (released first: it must answer the 503)
        os.unlink(self.server.path("state/block"))
        for creds in [["-u", "alice:pw"], ["-H", "Authorization: Bearer x"], ["-H", "Authorization;"]]:
            self.assertEqual(self.get(path, *creds).status, 503, creds)
        self.block()
        self.assertStale(path, body=first.body)  # the allowed request: stale
        self.release()

    def test_stale_keeps_the_workers_vary(self):
        for prefix in ["/swr", "/sie"]:
            with self.subTest(prefix=prefix):
                path = f"{prefix}/s.php?vary=X-Role"
                first = self.fresh(path, "-H", "X-Role: admin")
                self.assertIn(b"role=admin", first.body)
                self.fail_with(503)
                for args in [["-H", "X-Role: guest"], [], ["-H", "X-Role: Admin"]]:
                    r = self.get(path, *args)
                    self.assertEqual(r.status, 503, (args, r))
                self.assertStale(path, "-H", "X-Role: admin", body=first.body)
                self.release()


class EvictionAndReloadTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(CONF, FILES)
        self.addCleanup(self.server.cleanup)
        self.server.write("users.htpasswd", f"alice:{openssl_hash('alice-pw')}\n")
        self.server.start()

    def count(self):
        with open(self.server.path("count")) as f:
            return int(f.read() or 0)

    def hit(self, path):
        before = self.count()
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return self.count() == before

    def test_lru_eviction_at_max_memory(self):
        # max_memory 64 KiB: three 20 KB entries fit, a fourth evicts the least recently used
        for name in "abc":
            self.assertFalse(self.hit(f"/c.php?e={name}&big=20000"))
        self.assertTrue(self.hit("/c.php?e=a&big=20000"))  # b is now the least recently used
        self.assertFalse(self.hit("/c.php?e=d&big=20000"))
        self.assertTrue(self.hit("/c.php?e=a&big=20000"))
        self.assertTrue(self.hit("/c.php?e=c&big=20000"))
        self.assertTrue(self.hit("/c.php?e=d&big=20000"))
        self.assertFalse(self.hit("/c.php?e=b&big=20000"))

    def test_entry_over_max_entry_is_not_stored(self):
        self.assertFalse(self.hit("/c.php?e=huge&big=40000"))
        self.assertFalse(self.hit("/c.php?e=huge&big=40000"))

    def test_reload_empties_the_cache(self):
        self.assertFalse(self.hit("/c.php?t=reload"))
        self.assertTrue(self.hit("/c.php?t=reload"))
        log = self.server.read_log().count("configuration reloaded")
        self.server.proc.send_signal(signal.SIGHUP)
        h2ptest.wait_until(lambda: self.server.read_log().count("configuration reloaded") > log, what="the reload")
        self.assertFalse(self.hit("/c.php?t=reload"))
        self.assertTrue(self.hit("/c.php?t=reload"))
        h2ptest.stop_cleanly(self.server)


if __name__ == "__main__":
    h2ptest.main()
