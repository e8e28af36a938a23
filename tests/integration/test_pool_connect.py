"""`connect:` pools: external FastCGI workers that h2pool does not spawn (php-fpm's role).

The backends are started by the tests themselves (libfcgi apps listening on a unix socket with
`SOCKPATH NPROC`, and `php-cgi -b 127.0.0.1:PORT` with PHP_FCGI_CHILDREN=2) and killed by their
PID (their process group) at the end.  h2pool must spawn nothing, balance over the endpoints,
skip an endpoint that refuses connections or fails its ping, and answer at once when none is
left.
"""
import collections
import http.client
import os
import re
import signal
import socket
import subprocess
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import h2ptest
from test_pool import concurrent_requests, count_in_log, make_conf, ok_pid, request

APPS = h2ptest.APPS


log_shows = h2ptest.log_shows


def unix_accepts(path):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False


def tcp_accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class ConnectPoolTest(unittest.TestCase):
    def backend(self, argv, env=None, ready=None):
        """Starts an external worker in its own process group; killed by that PID at cleanup."""
        # umask 0: its unix socket accepts the front end, which runs as www-data when the tests run
        # as root (php-fpm's listen.owner / listen.mode do the same)
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, umask=0,
                             env=env if env is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

        def kill():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

        self.addCleanup(kill)
        if ready is not None:
            h2ptest.wait_until(lambda: p.poll() is None and ready(), what=f"{argv[0]} to listen")
        return p

    def unix_backend(self, name, sock, nproc=1):
        return self.backend([os.path.join(APPS, name), sock, str(nproc)], ready=lambda: unix_accepts(sock))

    def server(self, pools):
        s = h2ptest.Server(make_conf(pools))
        self.addCleanup(s.cleanup)
        return s

    def assert_spawned_nothing(self, s):
        self.assertEqual(s.workers(), [])
        self.assertEqual(count_in_log(s, r"spawned worker"), 0)

    # ---- serving ----------------------------------------------------------------------------

    def test_unix_endpoint_hello(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/hello.sock"], "max_processes": 2}})
        self.unix_backend("hello_fcgi", s.path("hello.sock"), 2)
        s.start()
        for _ in range(5):
            status, _, body = request(s.port(), "/ext/x")
            self.assertEqual((status, body), (200, b"hello from fastcgi\n"))
        self.assert_spawned_nothing(s)

    def test_tcp_endpoint_php_cgi(self):
        port = h2ptest.free_port()
        s = self.server({"php": {"connect": [f"tcp:127.0.0.1:{port}"], "max_processes": 2}})
        self.backend(["php-cgi", "-b", f"127.0.0.1:{port}"],
                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PHP_FCGI_CHILDREN": "2",
                          "PHP_FCGI_MAX_REQUESTS": "0"},
                     ready=lambda: tcp_accepts(port))
        s.start()
        status, _, body = request(s.port(), "/hello.php")
        self.assertEqual((status, body), (200, b"hello from php\n"))
        status, _, body = request(s.port(), "/env.php?q=1", headers={"X-Ext": "yes"})
        self.assertEqual(status, 200, body)
        env = dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)
        self.assertEqual(env["SCRIPT_NAME"], "/env.php")
        self.assertEqual(env["QUERY_STRING"], "q=1")
        self.assertEqual(env["HTTP_X_EXT"], "yes")
        status, _, body = request(s.port(), "/post.php", method="POST", body=b"a=1&b=2",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, body)
        self.assertIn(b'"post":{"a":"1","b":"2"}', body)
        # concurrency over the two php-cgi children
        results = concurrent_requests(s.port(), ["/hello.php"] * 20, workers=4)
        self.assertEqual(collections.Counter(r[0] for r in results), {200: 20})
        self.assert_spawned_nothing(s)

    def test_balances_over_endpoints(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/a.sock", "unix:{dir}/b.sock"], "max_processes": 2}})
        a = self.unix_backend("crash_fcgi", s.path("a.sock"))
        b = self.unix_backend("crash_fcgi", s.path("b.sock"))
        s.start()
        pids = collections.Counter()
        for _ in range(8):
            status, _, body = request(s.port(), "/ext/x")
            self.assertEqual(status, 200)
            pids[ok_pid(body)] += 1
        self.assertEqual(set(pids), {a.pid, b.pid}, pids)
        self.assertEqual(pids[a.pid], pids[b.pid], pids)  # least recently used first: round-robin

    def test_max_processes_bounds_connections(self):
        # one slot: a second concurrent request waits for it (here: no queue, so 503)
        s = self.server({"ext": {"connect": ["unix:{dir}/slow.sock"], "max_processes": 1, "queue_length": 0}})
        self.unix_backend("slow_fcgi", s.path("slow.sock"), 2)
        s.start()
        results = concurrent_requests(s.port(), ["/ext/x?ms=1000"] * 2)
        self.assertEqual(sorted(r[0] for r in results), [200, 503], results)

    # ---- health -----------------------------------------------------------------------------

    def test_refusing_endpoint_is_skipped(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/down.sock", "unix:{dir}/up.sock"], "max_processes": 2}})
        up = self.unix_backend("crash_fcgi", s.path("up.sock"))
        s.start()
        for method in ("GET", "POST", "GET", "POST"):  # nothing was sent: a POST goes elsewhere too
            status, _, body = request(s.port(), "/ext/x", method=method, body=b"x" if method == "POST" else None)
            self.assertEqual((status, ok_pid(body)), (200, up.pid))
        log_shows(s, r"endpoint unix:\S*down\.sock refused a connection: skipping it")
        self.assert_spawned_nothing(s)

    def test_endpoint_used_again_once_it_is_back(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/a.sock", "unix:{dir}/b.sock"], "max_processes": 2}})
        b = self.unix_backend("crash_fcgi", s.path("b.sock"))
        s.start()
        for _ in range(2):  # the two slots: one of them finds a.sock refusing
            status, _, body = request(s.port(), "/ext/x")
            self.assertEqual((status, ok_pid(body)), (200, b.pid))
        log_shows(s, r"endpoint unix:\S*a\.sock refused a connection")
        a = self.unix_backend("crash_fcgi", s.path("a.sock"))

        def served_by_a():
            status, _, body = request(s.port(), "/ext/x")
            self.assertEqual(status, 200)
            return ok_pid(body) == a.pid

        h2ptest.wait_until(served_by_a, timeout=30, interval=0.2, what="a request served by the endpoint that came back")

    def test_all_endpoints_down_is_503_at_once(self):
        closed_port = h2ptest.free_port()
        s = self.server({"ext": {"connect": ["unix:{dir}/none.sock", f"tcp:127.0.0.1:{closed_port}"], "max_processes": 2}})
        s.start()
        for method in ("GET", "POST", "GET"):
            # curl's --max-time is the "no hang" check: a request must be answered, not time out
            r = h2ptest.curl(s.url("/ext/x"), "-X", method, timeout=20)
            self.assertEqual(r.status, 503, r)
            self.assertIsNotNone(r.header("retry-after"))
        log_shows(s, "no endpoint is left")
        self.assert_spawned_nothing(s)
        # and concurrent requests, queued or not, all get their answer
        results = concurrent_requests(s.port(), ["/ext/x"] * 10)
        self.assertEqual({r[0] for r in results}, {503}, results)

    def test_single_tcp_endpoint_refusing_is_503(self):
        closed_port = h2ptest.free_port()
        s = self.server({"ext": {"connect": [f"tcp:127.0.0.1:{closed_port}"], "max_processes": 1}})
        s.start()
        for method in ("GET", "POST"):
            r = h2ptest.curl(s.url("/ext/x"), "-X", method, timeout=20)
            self.assertEqual(r.status, 503, r)
        log_shows(s, f"endpoint tcp:127.0.0.1:{closed_port} refused a connection")

    def test_ping_failure_skips_frozen_endpoint(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/a.sock", "unix:{dir}/b.sock"], "max_processes": 2,
                                 "ping": {"interval": "1s", "timeout": "1s"}, "request_timeout": "60s"}})
        a = self.unix_backend("crash_fcgi", s.path("a.sock"))
        b = self.unix_backend("crash_fcgi", s.path("b.sock"))
        s.start()
        seen = {ok_pid(request(s.port(), "/ext/x")[2]) for _ in range(4)}
        self.assertEqual(seen, {a.pid, b.pid})
        os.kill(a.pid, signal.SIGSTOP)  # accepts (the kernel does), never answers
        log_shows(s, r"endpoint unix:\S*a\.sock failed a ping")
        for _ in range(4):
            status, _, body = request(s.port(), "/ext/x", timeout=20)
            self.assertEqual((status, ok_pid(body)), (200, b.pid))
        self.assert_spawned_nothing(s)

    def test_ping_keeps_healthy_endpoint(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/a.sock"], "max_processes": 2,
                                 "ping": {"interval": "1s", "timeout": "2s"}}})
        a = self.unix_backend("crash_fcgi", s.path("a.sock"), 2)
        s.start()
        self.assertEqual(request(s.port(), "/ext/x")[0], 200)
        time.sleep(3.5)  # three ping intervals
        self.assertNotIn("failed a ping", s.read_log())
        self.assertNotIn("skipping it", s.read_log())
        self.assertEqual(request(s.port(), "/ext/x")[0], 200)
        self.assertIsNone(a.poll())

    # ---- failures of the external workers ---------------------------------------------------

    def test_backend_crash_mid_request_is_502_then_served(self):
        s = self.server({"ext": {"connect": ["unix:{dir}/c.sock"], "max_processes": 2}})
        self.unix_backend("crash_fcgi", s.path("c.sock"), 2)  # two processes: one survives
        s.start()
        status, _, _ = request(s.port(), "/ext/x?crash")
        self.assertEqual(status, 502)
        status, _, body = request(s.port(), "/ext/x")
        self.assertEqual(status, 200, body)
        self.assert_spawned_nothing(s)

    def test_garbage_backend_is_502_and_server_keeps_serving(self):
        s = self.server({"bad": {"connect": ["unix:{dir}/g.sock"], "max_processes": 1},
                         "ok": {"connect": ["unix:{dir}/h.sock"], "max_processes": 1}})
        self.backend([os.path.join(APPS, "garbage_fcgi"), s.path("g.sock"), "1"],
                     env={"GARBAGE_MODE": "random"}, ready=lambda: unix_accepts(s.path("g.sock")))
        self.unix_backend("hello_fcgi", s.path("h.sock"))
        s.start()
        self.assertEqual(request(s.port(), "/bad/x")[0], 502)
        self.assertEqual(request(s.port(), "/ok/x")[:3:2], (200, b"hello from fastcgi\n"))
        self.assertEqual(request(s.port(), "/bad/x")[0], 502)

    def test_shutdown_with_connections_in_use(self):
        # one slot holds a kept connection, the other a request in flight: SIGTERM lets the request
        # finish, then the slots go (exit status 0: under ASan, LeakSanitizer would make it 1)
        s = self.server({"ext": {"connect": ["unix:{dir}/slow.sock"], "max_processes": 2}})
        self.unix_backend("slow_fcgi", s.path("slow.sock"), 2)
        s.start()
        self.assertEqual(request(s.port(), "/ext/x?ms=0")[0], 200)
        conn = http.client.HTTPConnection("127.0.0.1", s.port(), timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", "/ext/x?chunks=4&ms=300")
        r = conn.getresponse()  # the head came: the request is at the backend
        self.assertEqual(r.status, 200)
        with ThreadPoolExecutor(1) as ex:
            stopped = ex.submit(s.stop)
            self.assertEqual(r.read(), b"tick\n" * 4)
            stopped.result()
        self.assertRegex(s.read_log(), r"\[notice\] stopped\n")
        self.assertEqual(s.proc_returncode, 0)

if __name__ == "__main__":
    h2ptest.main()
