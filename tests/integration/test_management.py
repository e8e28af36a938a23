"""The management endpoint (server.management): GET /status, GET /metrics, the dashboard at /.

Real h2pool, real libfcgi workers (tests/apps), curl and raw sockets; the Prometheus output is
checked with promtool and the dashboard drawn by headless Chromium when they are installed (the
tests that need them are skipped otherwise).
"""
import base64
import collections
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import h2ptest

CONF = """
server:
  threads: 2
  management: 127.0.0.1:{port:mgmt}
pools:
  app:
    {worker_user}
    command: [{apps}/crash_fcgi]
    max_processes: 2
  slow:
    {worker_user}
    command: [{apps}/slow_fcgi]
    max_processes: 1
    queue_length: 50
sites:
  a:
    bindings: ["http://127.0.0.1:{port:http}:a.test"]
    root: {dir}/www
    handlers:
      - {path: "/app/*", pool: app}
      - {path: "/slow/*", pool: slow}
  b:
    bindings: ["http://127.0.0.1:{port:http}:b.test"]
    root: {dir}/www
"""


def http_get(port, path, host=None, method="GET", timeout=30):
    """(status, headers, body) over a new connection; Host is 127.0.0.1:port unless given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def status_of(server):
    code, _, body = http_get(server.port("mgmt"), "/status")
    assert code == 200, (code, body)
    return json.loads(body)


def by_name(items, name):
    for item in items:
        if item["name"] == name:
            return item
    raise AssertionError(f"{name} not in {[i['name'] for i in items]}")


def metrics_of(server):
    code, headers, body = http_get(server.port("mgmt"), "/metrics")
    assert code == 200, (code, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    return body.decode()


def sample(text, name, **labels):
    """The value of one sample of the exposition text (None if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)\n"
    m = re.search(r"^" + pattern, text, re.M)
    return float(m.group(1)) if m else None


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def site_request(server, host, path):
    code, _, body = http_get(server.port(), path, host=host)
    return code


class ManagementTest(unittest.TestCase):
    def server(self, conf=CONF, files=None):
        files = dict(files or {})
        files.setdefault("www/index.html", "hello\n")
        s = h2ptest.Server(conf, files)
        self.addCleanup(s.cleanup)
        s.start()
        # the management socket is bound before the sites' listeners: wait for those too
        h2ptest.wait_until(lambda: port_open(s.port()), what="the site listener")
        return s

    # ---- /status ---------------------------------------------------------------------------

    def test_status_counts_requests_by_site_pool_and_class(self):
        s = self.server()
        for _ in range(7):
            self.assertEqual(site_request(s, "a.test", "/index.html"), 200)
        for _ in range(3):
            self.assertEqual(site_request(s, "a.test", "/missing"), 404)
        for _ in range(4):
            self.assertEqual(site_request(s, "a.test", "/app/x"), 200)
        self.assertEqual(site_request(s, "a.test", "/app/x?crash"), 502)
        for _ in range(2):
            self.assertEqual(site_request(s, "b.test", "/nothing"), 404)
        self.assertEqual(site_request(s, "nobody.test", "/"), 400)  # no site: the server's count only

        # a request is counted when it is disposed, a moment after its response: wait for the last
        h2ptest.wait_until(lambda: status_of(s)["requests"]["requests_total"] == 18, what="18 requests counted")
        st = status_of(s)
        a, b = by_name(st["sites"], "a"), by_name(st["sites"], "b")
        self.assertEqual(a["requests_total"], 15)
        self.assertEqual(a["by_class"], {"none": 0, "1xx": 0, "2xx": 11, "3xx": 0, "4xx": 3, "5xx": 1})
        self.assertEqual(b["by_class"]["4xx"], 2)
        self.assertEqual(b["requests_total"], 2)
        self.assertEqual(a["state"], "started")
        self.assertEqual(a["bindings"], [f"http://127.0.0.1:{s.port()}:a.test"])
        self.assertEqual(st["requests"]["by_class"]["4xx"], 6)
        # the latency histogram holds every request once
        self.assertEqual(sum(a["latency"]["counts"]), 15)
        self.assertEqual(len(a["latency"]["counts"]), len(a["latency"]["bounds_s"]) + 1)

        app = by_name(st["pools"], "app")
        self.assertEqual(app["requests_total"], 5)
        self.assertEqual(app["by_class"]["2xx"], 4)
        self.assertEqual(app["by_class"]["5xx"], 1)
        h2ptest.wait_until(lambda: by_name(status_of(s)["pools"], "app")["crashes_total"] == 1, what="the crash counted")
        app = by_name(status_of(s)["pools"], "app")
        self.assertEqual(app["spawns_total"], 1)  # (none since: the pool starts workers as requests come)
        self.assertEqual(app["max_processes"], 2)
        slow = by_name(st["pools"], "slow")
        self.assertEqual((slow["state"], slow["requests_total"], slow["spawns_total"]), ("idle", 0, 0))

        # connections: every request above came on its own connection; the management endpoint's
        # own requests are not the sites' traffic
        self.assertGreaterEqual(st["connections"]["accepted_total"], 18)
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["threads"], 2)
        self.assertEqual(st["pid"], s.proc.pid)
        self.assertEqual(status_of(s)["requests"]["requests_total"], 18)
        h2ptest.stop_cleanly(s)

    def test_status_lists_workers_queue_and_requests_in_flight(self):
        s = self.server()
        self.assertEqual(site_request(s, "a.test", "/slow/x?ms=0"), 200)  # the one worker is up
        with ThreadPoolExecutor(max_workers=4) as ex:
            futures = [ex.submit(site_request, s, "a.test", "/slow/x?ms=1500") for _ in range(4)]

            def queued():
                p = by_name(status_of(s)["pools"], "slow")
                return p if p["queue"] == 3 and p["workers"]["busy"] == 1 else None

            p = h2ptest.wait_until(queued, what="one busy worker and three queued requests")
            self.assertEqual(len(p["worker_list"]), 1)
            worker = p["worker_list"][0]
            self.assertIn(worker["pid"], s.workers())
            self.assertEqual(worker["state"], "busy")
            self.assertGreater(worker["rss_bytes"], 0)
            self.assertEqual(status_of(s)["requests"]["in_flight"], 4)
            self.assertEqual(sorted(f.result() for f in futures), [200] * 4)
        h2ptest.wait_until(lambda: by_name(status_of(s)["pools"], "slow")["queue"] == 0, what="the queue to empty")
        h2ptest.stop_cleanly(s)

    def test_events_counted_recycles_violations_rapid_fail(self):
        conf = """
        server:
          management: 127.0.0.1:{port:mgmt}
        pools:
          recycled:
            {worker_user}
            command: [{apps}/hello_fcgi]
            max_processes: 1
            max_requests: 2
          stray:
            {worker_user}
            command: [{apps}/stray_fcgi]
            max_processes: 1
          crash:
            {worker_user}
            command: [{apps}/crash_fcgi]
            max_processes: 1
            rapid_fail: {max_crashes: 2, interval: 1m}
        sites:
          a:
            bindings: ["http://127.0.0.1:{port:http}"]
            root: {dir}/www
            handlers:
              - {path: "/recycled/*", pool: recycled}
              - {path: "/stray/*", pool: stray}
              - {path: "/crash/*", pool: crash}
        """
        s = self.server(conf)
        for _ in range(6):
            self.assertEqual(site_request(s, None, "/recycled/x"), 200)
        self.assertEqual(site_request(s, None, "/stray/x?stray=same-write"), 200)
        for _ in range(2):
            self.assertEqual(site_request(s, None, "/crash/x?crash"), 502)

        def settled():
            pools = status_of(s)["pools"]
            return pools if (by_name(pools, "stray")["protocol_violations_total"] == 1
                             and by_name(pools, "crash")["state"] == "stopped"
                             and by_name(pools, "recycled")["recycles_total"] >= 2) else None

        pools = h2ptest.wait_until(settled, what="the violation, the recycles and the rapid-fail trip")
        crash = by_name(pools, "crash")
        self.assertEqual(crash["stopped_by"], "rapid-fail protection")
        self.assertEqual(crash["rapid_fail_trips_total"], 1)
        self.assertEqual(crash["crashes_total"], 2)
        self.assertEqual(by_name(pools, "stray")["crashes_total"], 0)  # killed for the violation: no crash
        self.assertEqual(site_request(s, None, "/crash/x"), 503)
        text = metrics_of(s)
        self.assertEqual(sample(text, "h2pool_pool_up", pool="crash"), 0)
        self.assertEqual(sample(text, "h2pool_pool_rapid_fail_trips_total", pool="crash"), 1)
        self.assertEqual(sample(text, "h2pool_pool_protocol_violations_total", pool="stray"), 1)
        self.assertGreaterEqual(sample(text, "h2pool_pool_recycles_total", pool="recycled"), 2)
        self.assertIn("rapid-fail", " ".join(e["line"] for e in status_of(s)["recent_errors"]))
        h2ptest.stop_cleanly(s)

    def test_counters_survive_a_reload(self):
        s = self.server()
        for _ in range(3):
            self.assertEqual(site_request(s, "a.test", "/app/x"), 200)
        h2ptest.wait_until(lambda: by_name(status_of(s)["pools"], "app")["requests_total"] == 3, what="3 requests")
        # a changed pool is a new pool (its workers are replaced); its counters go on by name
        s.write("conf.d/h2pool.yaml", s.expand(CONF.replace("max_processes: 2", "max_processes: 3")))
        h2ptest.wait_until(lambda: status_of(s)["generation"] == 2, what="the reload")
        self.assertEqual(site_request(s, "a.test", "/app/x"), 200)
        h2ptest.wait_until(lambda: by_name(status_of(s)["pools"], "app")["requests_total"] == 4, what="4 requests")
        self.assertEqual(by_name(status_of(s)["sites"], "a")["requests_total"], 4)
        text = metrics_of(s)
        self.assertEqual(sample(text, "h2pool_pool_requests_total", pool="app", **{"class": "2xx"}), 4)
        self.assertEqual(sample(text, "h2pool_configuration_generation"), 2)

    # ---- /metrics --------------------------------------------------------------------------
        h2ptest.stop_cleanly(s)

    def test_metrics_values(self):
        s = self.server()
        for _ in range(5):
            site_request(s, "a.test", "/app/x")
        site_request(s, "a.test", "/missing")
        h2ptest.wait_until(lambda: status_of(s)["requests"]["requests_total"] == 6, what="6 requests")
        text = metrics_of(s)
        self.assertEqual(sample(text, "h2pool_site_requests_total", site="a", **{"class": "2xx"}), 5)
        self.assertEqual(sample(text, "h2pool_site_requests_total", site="a", **{"class": "4xx"}), 1)
        self.assertEqual(sample(text, "h2pool_site_requests_total", site="b", **{"class": "2xx"}), 0)
        self.assertEqual(sample(text, "h2pool_site_request_duration_seconds_count", site="a"), 6)
        self.assertEqual(sample(text, "h2pool_site_request_duration_seconds_bucket", site="a", le="+Inf"), 6)
        self.assertEqual(sample(text, "h2pool_pool_request_duration_seconds_count", pool="app"), 5)
        self.assertEqual(sample(text, "h2pool_requests_total", **{"class": "2xx"}), 5)
        self.assertEqual(sample(text, "h2pool_site_up", site="a"), 1)
        self.assertEqual(sample(text, "h2pool_pool_up", pool="app"), 1)
        self.assertEqual(sample(text, "h2pool_pool_max_processes", pool="app"), 2)
        self.assertEqual(sample(text, "h2pool_pool_spawns_total", pool="app"), 1)
        self.assertEqual(sample(text, "h2pool_pool_workers", pool="app", state="idle"), 1)
        self.assertEqual(sample(text, "h2pool_pool_queue", pool="slow"), 0)
        self.assertEqual(sample(text, "h2pool_pool_queue_length", pool="slow"), 50)
        self.assertGreaterEqual(sample(text, "h2pool_connections_accepted_total"), 6)
        self.assertEqual(sample(text, "h2pool_info", version=re.search(r'version="([^"]+)"', text).group(1)), 1)
        pid = s.workers()[0]
        self.assertEqual(sample(text, "h2pool_worker_requests_total", pool="app", pid=pid), 5)
        self.assertGreater(sample(text, "h2pool_worker_resident_memory_bytes", pool="app", pid=pid), 0)
        # buckets are cumulative
        buckets = [float(v) for v in re.findall(r'^h2pool_site_request_duration_seconds_bucket\{site="a",le="[^"]+"\} (\S+)$', text, re.M)]
        self.assertEqual(buckets, sorted(buckets))
        h2ptest.stop_cleanly(s)

    @unittest.skipUnless(shutil.which("promtool"), "promtool (Debian package prometheus) is not installed")
    def test_metrics_pass_promtool(self):
        s = self.server()
        for path in ("/app/x", "/app/x?crash", "/missing", "/index.html"):
            site_request(s, "a.test", path)
        text = metrics_of(s)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    # ---- the HTTP side ---------------------------------------------------------------------

    def test_pages_methods_and_headers(self):
        s = self.server()
        port = s.port("mgmt")
        code, headers, body = http_get(port, "/")
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn("script-src 'self'", headers["content-security-policy"])
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertIn(b'<script src="/dashboard.js">', body)
        code, headers, body = http_get(port, "/dashboard.js")
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/javascript"))
        self.assertIn(b"fetch(\"/status\"", body)
        code, headers, body = http_get(port, "/status", method="HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers["content-type"], "application/json")
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            code, headers, _ = http_get(port, "/status", method=method)
            self.assertEqual(code, 405, method)
            self.assertEqual(headers["allow"], "GET, HEAD")
        for path in ("/nope", "/status/x", "/metrics.txt", "/%2e%2e/x", "/app/x", "/www/index.html"):
            self.assertEqual(http_get(port, path)[0], 404, path)
        self.assertEqual(http_get(port, "/status?x=1")[0], 200)
        # the management port is not a site: the sites' counters did not move
        self.assertEqual(status_of(s)["requests"]["requests_total"], 0)
        h2ptest.stop_cleanly(s)

    def test_dns_rebinding_names_refused_on_loopback(self):
        s = self.server()
        port = s.port("mgmt")
        for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.evil.example",
                     "127.0.0.1.nip.io", "xn--80ak6aa92e.com", "a" * 300, "[", "127.0.0.1:99999x"):
            code, _, body = http_get(port, "/status", host=host)
            self.assertEqual(code, 403, host)
            self.assertNotIn(b"requests_total", body)
        for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", "[::1]", f"[::1]:{port}",
                     "127.0.0.2", "10.1.2.3"):
            self.assertEqual(http_get(port, "/status", host=host)[0], 200, host)
        # HTTP/1.0 without Host
        out = h2ptest.raw_request(port, b"GET /status HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200") or out.startswith(b"HTTP/1.0 200"), out[:100])
        h2ptest.stop_cleanly(s)

    def test_garbage_and_floods_leave_it_serving(self):
        s = self.server()
        port = s.port("mgmt")
        for data in (b"\x00\xff" * 500 + b"\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET " + b"/a" * 40000 + b" HTTP/1.1\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n",
                     b"POST /status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 65536,
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(64)):
            try:
                out = h2ptest.raw_request(port, data, timeout=5)
            except OSError:
                out = b""
            self.assertNotIn(b"requests_total", out)
        # more connections than it takes (32): the others are closed at once, and it serves once they go
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]

        def closed_by_server():
            n = 0
            for c in held:
                try:
                    n += c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n >= 40 - 32

        try:
            h2ptest.wait_until(closed_by_server, what="the connections beyond 32 to be closed")
        finally:
            for c in held:
                c.close()
        def serves():
            try:
                return http_get(port, "/status")[0] == 200
            except OSError:  # (closed at once while it has not yet seen the others go)
                return False

        h2ptest.wait_until(serves, what="the endpoint to serve again")
        self.assertEqual(site_request(s, "a.test", "/index.html"), 200)
        h2ptest.stop_cleanly(s)

    def test_basic_authentication(self):
        # server.management_users_file: every path asks for a user of that file
        from test_auth import bcrypt_hash
        conf = CONF.replace("management: 127.0.0.1:{port:mgmt}",
                            "management: 127.0.0.1:{port:mgmt}\n  management_users_file: mgmt.htpasswd")
        s = self.server(conf, {"conf.d/mgmt.htpasswd": f"admin:{bcrypt_hash('s3cret')}\n"})
        port = s.port("mgmt")

        def get(path, credentials=None, raw=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.putrequest("GET", path, skip_host=True)
                conn.putheader("Host", f"127.0.0.1:{port}")
                if credentials is not None or raw is not None:
                    token = raw if raw is not None else "Basic " + base64.b64encode(credentials.encode()).decode()
                    conn.putheader("Authorization", token)
                conn.endheaders()
                r = conn.getresponse()
                return r.status, r.getheader("www-authenticate"), r.read()
            finally:
                conn.close()
        for path in ("/", "/status", "/metrics", "/dashboard.js", "/nothing"):
            with self.subTest(path=path):
                status, challenge, body = get(path)
                self.assertEqual((status, challenge), (401, 'Basic realm="h2pool management"'))
                self.assertNotIn(b"h2pool_requests", body)
        for bad in ("admin:wrong", "admin:", "nobody:s3cret", ":s3cret", "admin:s3cret ", "admin:S3CRET"):
            with self.subTest(credentials=bad):
                self.assertEqual(get("/status", bad)[0], 401)
        for raw in ("Basic", "Basic ", "Basic !!!", "Bearer YWRtaW46czNjcmV0", "Basic YWRtaW46czNjcmV0=", "Basic " + "A" * 600):
            with self.subTest(raw=raw):
                self.assertEqual(get("/status", raw=raw)[0], 401)
        for _ in range(3):  # (the second and third from the verified cache)
            status, _, body = get("/status", "admin:s3cret")
            self.assertEqual(status, 200)
            self.assertIn("sites", json.loads(body))
        self.assertEqual(get("/metrics", "admin:s3cret")[0], 200)
        h2ptest.stop_cleanly(s)

    def test_bare_port_listens_on_loopback_only(self):
        s = self.server(CONF.replace("management: 127.0.0.1:{port:mgmt}", "management: {port:mgmt}"))
        port = s.port("mgmt")
        self.assertEqual(http_get(port, "/status")[0], 200)
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        local, state = line.split()[1], line.split()[3]
                        if state == "0A" and int(local.split(":")[1], 16) == port:
                            listening.append(local.split(":")[0])
            except FileNotFoundError:
                pass
        self.assertEqual(listening, ["0100007F"])  # 127.0.0.1, and nothing else

    def test_management_address_errors(self):
        for value, why in (("localhost:8090", "IP address"), ("127.0.0.1:0", "port"), ("99999", "port"),
                           ("127.0.0.1:", "port"), ("[::1", "IPv6")):
            with self.subTest(value=value):
                s = h2ptest.Server(CONF.replace("127.0.0.1:{port:mgmt}", f'"{value}"'), {"www/index.html": "x"},
                                   expect_start=False)
                self.addCleanup(s.cleanup)
                r = h2ptest.run_h2pool("-t", "-c", s.conf)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertRegex(r.stderr, r"h2pool\.yaml:\d+:\d+: server\.management: .*" + why, r.stderr)

    def test_port_taken_fails_the_start(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            conf = CONF.replace("{port:mgmt}", str(taken.getsockname()[1]))
            s = h2ptest.Server(conf, {"www/index.html": "x"}, expect_start=False)
            self.addCleanup(s.cleanup)
            s.start()
            self.assertEqual(s.proc.wait(30), 1)
            self.assertIn("server.management: cannot listen on", s.read_log())

    def test_reload_changing_it_is_logged(self):
        s = self.server()
        s.write("conf.d/h2pool.yaml", s.expand(CONF.replace("127.0.0.1:{port:mgmt}", "127.0.0.1:{port:other}")))
        h2ptest.wait_until(lambda: "server.management changed: it applies at the next start" in s.read_log(),
                           what="the warning")
        self.assertEqual(status_of(s)["generation"], 2)  # the rest of the reload applies; the old port serves

    # ---- the dashboard, drawn by a real browser ---------------------------------------------

    @unittest.skipUnless(shutil.which("chromium"), "chromium is not installed")
    def test_dashboard_draws_live_data(self):
        s = self.server()
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                site_request(s, "a.test", "/app/x")
                site_request(s, "a.test", "/missing")
                time.sleep(0.05)

        t = threading.Thread(target=traffic)
        t.start()
        try:
            # a few seconds of history: the charts draw one point a second
            h2ptest.wait_until(lambda: sum(1 for v in status_of(s)["history"]["requests_per_s"] if v > 0) >= 3,
                               what="three seconds of traffic in the history")
            profile = tempfile.mkdtemp(prefix="h2pool-chromium-")
            self.addCleanup(shutil.rmtree, profile, True)
            shot = os.path.join(profile, "dashboard.png")
            url = f"http://127.0.0.1:{s.port('mgmt')}/"
            common = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1200",
                      "--virtual-time-budget=5000"]
            dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            shot_run = subprocess.run(common + [f"--screenshot={shot}", url], capture_output=True, timeout=120)
        finally:
            stop.set()
            t.join()
        # the request-rate chart holds the samples it was given, and lines through them
        m = re.search(r'<svg[^>]*id="chart-rps"[^>]*>', dom)
        self.assertIsNotNone(m, dom[:2000])
        samples = int(re.search(r'data-samples="(\d+)"', m.group(0)).group(1))
        points = int(re.search(r'data-points="(\d+)"', m.group(0)).group(1))
        self.assertGreaterEqual(samples, 3)
        self.assertGreaterEqual(points, 3)
        line = re.search(r'<polyline[^>]*data-series="requests"[^>]*>', dom) or re.search(r'<polyline[^>]*>', "")
        self.assertIsNotNone(line, "no request-rate line")
        self.assertRegex(re.search(r'points="([^"]*)"', line.group(0)).group(1), r"^[0-9.]+,[0-9.]+( [0-9.]+,[0-9.]+){2,}$")
        lat = re.search(r'<svg[^>]*id="chart-latency"[^>]*>', dom).group(0)
        self.assertGreaterEqual(int(re.search(r'data-points="(\d+)"', lat).group(1)), 1)
        # each pool's card, its worker (idle or busy), its counters; each site's row
        self.assertRegex(dom, r'data-pool="app" data-state="running"')
        self.assertRegex(dom, r'class="worker (idle|busy)"[^>]*data-pid="\d+"')
        self.assertRegex(dom, r'data-pool="slow" data-state="idle"')
        self.assertRegex(dom, r'<tr data-site="a">')
        self.assertRegex(dom, r'<tr data-site="b">')
        self.assertIn('class="dot ok"', dom)
        self.assertEqual(shot_run.returncode, 0, shot_run.stderr[-2000:])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
