"""`h2pool ctl` and the control socket (server.control_socket).

Real h2pool, real libfcgi workers (tests/apps), the real `h2pool ctl` client, and raw unix
sockets for what a client other than ours could send.  Tests that need another uid run the
client through setpriv (they are skipped when not run as root).
"""
import grp
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import h2ptest

CONF = """
server:
  threads: 2
  control_socket: ../run/h2pool.sock
pools:
  app:
    {worker_user}
    command: [{apps}/crash_fcgi]
    max_processes: 2
    rapid_fail: {max_crashes: 2, interval: 1m}
  slow:
    {worker_user}
    command: [{apps}/slow_fcgi]
    max_processes: 1
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

AS_ROOT = os.geteuid() == 0
SERVER_USER = "www-data"


def request(port, host, path, timeout=30):
    """(status, headers, body) of one GET on a new connection."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def ctl(server, *args, user=None, socket_path=None, timeout=60):
    """Runs `h2pool ctl -c <conf> args...` (as `user` through setpriv); CompletedProcess."""
    cmd = [h2ptest.BIN, "ctl"] + (["-s", socket_path] if socket_path else ["-c", server.conf]) + list(args)
    if user is not None:
        uid, gid = user
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def ctl_json(server, *args):
    r = ctl(server, "--json", *args)
    return r.returncode, json.loads(r.stdout)


def table(text):
    """Rows of a table `h2pool ctl` printed, as dicts by header."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    return [dict(zip(header, line.split(None, len(header) - 1))) for line in lines[1:]]


class Raw:
    """A raw connection to the control socket."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)  # (blocking: a full backlog makes a non-blocking unix connect fail at once)
        self.sock.settimeout(timeout)
        self.pending = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next answer line as JSON, or None at EOF."""
        while b"\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj):
        self.send(json.dumps(obj).encode() + b"\n")
        return self.line()

    def at_eof(self):
        try:
            return self.sock.recv(1) == b"" and not self.pending
        except OSError:
            return True

    def close(self):
        self.sock.close()


class CtlTest(unittest.TestCase):
    def server(self, conf=CONF, files=None):
        files = dict(files or {})
        files.setdefault("www/index.html", "hello\n")
        s = h2ptest.Server(conf, files)
        os.makedirs(s.path("run"), exist_ok=True)
        self.addCleanup(s.cleanup)
        s.start()
        h2ptest.wait_until(lambda: os.path.exists(self.sock(s)), what="the control socket")
        return s

    def sock(self, s):
        return s.path("run/h2pool.sock")

    def raw(self, s):
        r = Raw(self.sock(s))
        self.addCleanup(r.close)
        return r

    # ---- listing ---------------------------------------------------------------------------

    def test_list_sites_pools_workers(self):
        s = self.server()
        for _ in range(3):
            self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        self.assertEqual(request(s.port(), "a.test", "/missing")[0], 404)
        h2ptest.wait_until(lambda: ctl_json(s, "list", "sites")[1]["sites"][0]["requests_total"] == 4, what="4 requests")

        r = ctl(s, "list", "sites")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {row["SITE"]: row for row in table(r.stdout)}
        self.assertEqual(set(rows), {"a", "b"})
        self.assertEqual((rows["a"]["STATE"], rows["a"]["REQUESTS"], rows["a"]["2XX"], rows["a"]["4XX"]), ("started", "4", "3", "1"))
        self.assertEqual(rows["a"]["BINDINGS"], f"http://127.0.0.1:{s.port()}:a.test")

        r = ctl(s, "list", "pools")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {row["POOL"]: row for row in table(r.stdout)}
        self.assertEqual((rows["app"]["STATE"], rows["app"]["IDLE"], rows["app"]["SPAWNS"], rows["app"]["REQUESTS"]),
                         ("running", "1", "1", "3"))
        self.assertEqual((rows["slow"]["STATE"], rows["slow"]["IDLE"]), ("idle", "0"))

        r = ctl(s, "list", "workers")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = table(r.stdout)
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["POOL"], int(rows[0]["PID"]), rows[0]["STATE"], rows[0]["REQUESTS"]),
                         ("app", s.workers()[0], "idle", "3"))

        code, answer = ctl_json(s, "list", "workers")
        self.assertEqual(code, 0)
        self.assertEqual(answer["ok"], True)
        w = answer["workers"][0]
        self.assertEqual((w["pool"], w["pid"], w["state"], w["requests"]), ("app", s.workers()[0], "idle", 3))
        self.assertGreater(w["rss_bytes"], 0)
        code, answer = ctl_json(s, "list", "pools")
        self.assertEqual({p["name"] for p in answer["pools"]}, {"app", "slow"})
        self.assertNotIn("history", answer["pools"][0])
        h2ptest.stop_cleanly(s)

    def test_status(self):
        s = self.server()
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        r = ctl(s, "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"^h2pool \S+, pid {s.proc.pid}, up \S+, configuration generation 1, 2 threads\n")
        self.assertRegex(r.stdout, r"\nSITE +STATE .*\na +started ")
        self.assertRegex(r.stdout, r"\nPOOL +STATE .*\napp +running ")
        code, answer = ctl_json(s, "status")
        self.assertEqual((code, answer["status"]["pid"], answer["status"]["generation"]), (0, s.proc.pid, 1))
        h2ptest.stop_cleanly(s)

    def test_list_requests_in_flight(self):
        s = self.server()
        self.assertEqual(request(s.port(), "a.test", "/slow/x?ms=0")[0], 200)  # its one worker is up
        pid = s.workers()[0]
        with ThreadPoolExecutor(max_workers=2) as ex:
            first = ex.submit(request, s.port(), "a.test", "/slow/first?ms=3000")
            h2ptest.wait_until(lambda: len(ctl_json(s, "list", "requests")[1]["requests"]) == 1, what="the first request")
            second = ex.submit(request, s.port(), "a.test", "/slow/second?ms=0")

            def both():
                reqs = ctl_json(s, "list", "requests")[1]["requests"]
                return reqs if len(reqs) == 2 else None

            reqs = {r["url"]: r for r in h2ptest.wait_until(both, what="two requests in flight")}
            busy, queued = reqs["a.test/slow/first?ms=3000"], reqs["a.test/slow/second?ms=0"]
            self.assertEqual((busy["site"], busy["pool"], busy["worker_pid"], busy["stage"], busy["method"]),
                             ("a", "slow", pid, "worker", "GET"))
            self.assertEqual((queued["pool"], queued["worker_pid"], queued["stage"]), ("slow", None, "queued"))
            self.assertRegex(busy["client"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(busy["protocol"], "HTTP/1.1")
            r = ctl(s, "list", "requests")
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = table(r.stdout)
            self.assertEqual([row["URL"] for row in rows], ["a.test/slow/first?ms=3000", "a.test/slow/second?ms=0"])
            self.assertEqual((rows[0]["SITE"], rows[0]["POOL"], rows[0]["PID"], rows[0]["STAGE"]), ("a", "slow", str(pid), "worker"))
            self.assertEqual(first.result()[0], 200)
            self.assertEqual(second.result()[0], 200)
        h2ptest.wait_until(lambda: ctl_json(s, "list", "requests")[1]["requests"] == [], what="no request in flight")
        self.assertEqual(ctl(s, "list", "requests").stdout, "no request in flight\n")
        h2ptest.stop_cleanly(s)

    def test_list_requests_shows_what_clients_sent_safely(self):
        s = self.server()
        with socket.create_connection(("127.0.0.1", s.port())) as c:
            # bytes beyond ASCII in the target are shown %-escaped (the JSON answer stays valid UTF-8)
            c.sendall(b"GET /slow/%ff\xff\"<x>?ms=2000 HTTP/1.1\r\nHost: a.test\r\n\r\n")

            def one():
                reqs = ctl_json(s, "list", "requests")[1]["requests"]
                return reqs[0] if len(reqs) == 1 else None

            r = h2ptest.wait_until(one, what="the request in flight")
            self.assertEqual(r["url"], 'a.test/slow/%ff%FF"<x>?ms=2000')
            out = ctl(s, "list", "requests")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn('a.test/slow/%ff%FF"<x>?ms=2000', out.stdout)
            c.settimeout(30)
            self.assertTrue(c.recv(100).startswith(b"HTTP/1.1 200"))

    # ---- sites and pools -------------------------------------------------------------------

    def test_stop_and_start_site(self):
        s = self.server()
        r = ctl(s, "stop", "site", "a")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertIn("site a stopped", r.stdout)
        for path in ("/", "/index.html", "/app/x"):
            status, headers, body = request(s.port(), "a.test", path)
            self.assertEqual(status, 503, path)
            self.assertIn("retry-after", headers)
        self.assertEqual(request(s.port(), "b.test", "/index.html")[0], 200)  # the other site serves on
        rows = {row["SITE"]: row for row in table(ctl(s, "list", "sites").stdout)}
        self.assertEqual((rows["a"]["STATE"], rows["b"]["STATE"]), ("stopped", "started"))
        self.assertIn("already stopped", ctl(s, "stop", "site", "a").stdout)
        # a reload keeps a stopped site stopped (run-time state, as IIS's)
        self.assertEqual(ctl(s, "reload").returncode, 0)
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 503)
        r = ctl(s, "start", "site", "a")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("site a started", r.stdout)
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 200)
        h2ptest.log_shows(s, "site a stopped by h2pool ctl")
        h2ptest.stop_cleanly(s)

    def test_stop_and_start_pool(self):
        s = self.server()
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        pid = s.workers()[0]
        r = ctl(s, "stop", "pool", "app")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pool app stopped", r.stdout)
        h2ptest.wait_until(lambda: not h2ptest.process_alive(pid), what="the idle worker to stop")
        status, headers, _ = request(s.port(), "a.test", "/app/x")
        self.assertEqual(status, 503)
        self.assertIn("retry-after", headers)
        self.assertEqual(s.workers(), [])
        rows = {row["POOL"]: row for row in table(ctl(s, "list", "pools").stdout)}
        self.assertEqual(rows["app"]["STATE"], "stopped")
        self.assertIn("stopped by h2pool ctl", rows["app"]["NOTE"])
        self.assertEqual(request(s.port(), "a.test", "/slow/x?ms=0")[0], 200)  # other pools serve on
        r = ctl(s, "start", "pool", "app")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pool app started", r.stdout)
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        self.assertIn("already started", ctl(s, "start", "pool", "app").stdout)
        h2ptest.stop_cleanly(s)

    def test_start_rearms_a_pool_stopped_by_rapid_fail(self):
        s = self.server()
        for _ in range(2):
            self.assertEqual(request(s.port(), "a.test", "/app/x?crash")[0], 502)
        h2ptest.wait_until(lambda: "stopped by rapid-fail protection" in s.read_log(), what="the pool to stop")
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 503)
        rows = {row["POOL"]: row for row in table(ctl(s, "list", "pools").stdout)}
        self.assertEqual((rows["app"]["STATE"], rows["app"]["NOTE"]), ("stopped", "stopped by rapid-fail protection"))
        r = ctl(s, "start", "pool", "app")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("it was stopped by rapid-fail protection", r.stdout)
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        # re-armed afresh: it takes max_crashes new crashes to stop it again, not one
        self.assertEqual(request(s.port(), "a.test", "/app/x?crash")[0], 502)
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        _, answer = ctl_json(s, "list", "pools")
        app = [p for p in answer["pools"] if p["name"] == "app"][0]
        self.assertEqual((app["state"], app["rapid_fail_trips_total"]), ("running", 1))
        h2ptest.stop_cleanly(s)

    def test_a_worker_ready_while_its_pool_is_stopped_leaves_no_trace(self):
        # The worker starts while the pool is running and becomes ready after `stop pool`: it is
        # stopped at once.  Started again, the pool must start workers as before: it once counted
        # that worker as running for ever, so that max_processes (and min_processes) were
        # reached with no process at all, and requests waited for request_timeout, then got 503.
        conf = """
        server:
          threads: 2
          control_socket: ../run/h2pool.sock
        pools:
          late:
            {worker_user}
            command: [/bin/sh, -c, "while [ ! -e {dir}/go ]; do /bin/sleep 0.05; done; exec {apps}/hello_fcgi"]
            min_processes: 1
            max_processes: 1
            request_timeout: 10s
        sites:
          a:
            bindings: ["http://127.0.0.1:{port:http}:a.test"]
            root: {dir}/www
            handlers:
              - {path: "/late/*", pool: late}
        """
        s = self.server(conf)
        h2ptest.wait_until(lambda: len(s.workers()) == 1, what="the first worker to start")
        starting = s.workers()[0]
        r = ctl(s, "stop", "pool", "late")
        self.assertEqual(r.returncode, 0, r.stderr)
        s.write("go", "")  # the worker becomes ready now, with its pool stopped
        h2ptest.wait_until(lambda: not h2ptest.process_alive(starting), what="the worker to be stopped once ready")
        self.assertEqual(request(s.port(), "a.test", "/late/x")[0], 503)
        r = ctl(s, "start", "pool", "late")
        self.assertEqual(r.returncode, 0, r.stderr)
        status, _, body = request(s.port(), "a.test", "/late/x")
        self.assertEqual((status, body), (200, b"hello from fastcgi\n"))
        h2ptest.wait_until(lambda: len(s.workers()) == 1, what="min_processes: one worker")
        h2ptest.stop_cleanly(s)

    def test_recycle_pool_replaces_every_worker(self):
        conf = CONF.replace("max_processes: 2\n", "max_processes: 2\n    min_processes: 2\n", 1)
        s = self.server(conf)

        def idle_workers():
            return [w["pid"] for w in ctl_json(s, "list", "workers")[1]["workers"] if w["state"] == "idle"]

        h2ptest.wait_until(lambda: len(idle_workers()) == 2, what="two workers ready")
        before = set(s.workers())
        r = ctl(s, "recycle", "pool", "app")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("recycling 2 workers", r.stdout)
        h2ptest.wait_until(lambda: len(s.workers()) == 2 and not (set(s.workers()) & before), what="two new workers")
        self.assertEqual(request(s.port(), "a.test", "/app/x")[0], 200)
        _, answer = ctl_json(s, "list", "pools")
        self.assertEqual([p["recycles_total"] for p in answer["pools"] if p["name"] == "app"], [2])
        # a pool without workers has nothing to recycle; a stopped one is refused
        self.assertIn("recycling 0 workers", ctl(s, "recycle", "pool", "slow").stdout)
        ctl(s, "stop", "pool", "slow")
        r = ctl(s, "recycle", "pool", "slow")
        self.assertEqual(r.returncode, 1)
        self.assertIn("pool slow is stopped", r.stderr)

    # ---- reload ----------------------------------------------------------------------------
        h2ptest.stop_cleanly(s)

    def test_reload(self):
        s = self.server()
        r = ctl(s, "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "configuration reloaded: generation 2\n")
        # a broken configuration: refused, its errors shown, the running one serves on
        s.write("conf.d/h2pool.yaml", s.expand(CONF).replace("max_processes: 1", "max_processes: lots"))
        h2ptest.wait_until(lambda: "reload (conf.d changed) refused" in s.read_log(), what="the watcher's reload")
        r = ctl(s, "reload")
        self.assertEqual(r.returncode, 1)
        self.assertIn("reload refused", r.stderr)
        self.assertRegex(r.stderr, r"h2pool\.yaml:\d+:\d+: pools\.slow\.max_processes: ")
        code, answer = ctl_json(s, "reload")
        self.assertEqual((code, answer["ok"], answer["code"]), (1, False, "reload_refused"))
        self.assertTrue(any("max_processes" in e for e in answer["errors"]))
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 200)
        self.assertEqual(ctl_json(s, "status")[1]["status"]["generation"], 2)

    # ---- the command line ------------------------------------------------------------------
        h2ptest.stop_cleanly(s)

    def test_unknown_commands_and_names_exit_2(self):
        s = self.server()
        cases = [
            (["frobnicate"], r'unknown command "frobnicate"'),
            (["list"], r"list what\?"),
            (["list", "cats"], r'cannot list "cats"'),
            (["list", "sites", "extra"], r"list takes one argument"),
            (["stop", "site"], r"usage: h2pool ctl stop site\|pool NAME"),
            (["stop", "cat", "x"], r'cannot stop a "cat"'),
            (["recycle", "site", "a"], r'cannot recycle a "site"'),
            (["status", "now"], r'status takes no argument \("now"\)'),
            (["stop", "site", "nosuch"], r'no site named "nosuch"'),
            (["start", "pool", "nosuch"], r'no pool named "nosuch"'),
            (["recycle", "pool", "a"], r'no pool named "a"'),  # a site's name is no pool's
            (["stop", "site", "app"], r'no site named "app"'),
            (["stop", "site", "../a"], r'no site named "\.\./a"'),
            (["stop", "site", "a\nb"], r'no site named "a\\x0Ab"'),
            (["stop", "pool", "é" * 100], r'no pool named "(\\x[0-9A-F]{2})+\.\.\."'),
            (["stop", "pool", ""], r'no pool named ""'),
            ([], r"usage: h2pool ctl"),
            (["--frob", "status"], r"usage: h2pool ctl"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = ctl(s, *args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertRegex(r.stderr, message)
        code, answer = ctl_json(s, "stop", "pool", "nosuch")
        self.assertEqual((code, answer["ok"], answer["code"]), (2, False, "unknown_name"))
        self.assertEqual(ctl(s, "-h").returncode, 0)
        h2ptest.stop_cleanly(s)

    def test_no_socket_configured_or_no_server(self):
        s = self.server()
        other = h2ptest.Server(CONF.replace("  control_socket: ../run/h2pool.sock\n", ""), {"www/index.html": "x"},
                               expect_start=False)
        self.addCleanup(other.cleanup)
        r = ctl(other, "status")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sets no server.control_socket", r.stderr)
        r = ctl(s, "status", socket_path=s.path("run/none.sock"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no control socket at", r.stderr)
        r = ctl(s, "status", socket_path=self.sock(s))  # -s works too
        self.assertEqual(r.returncode, 0, r.stderr)
        h2ptest.stop_cleanly(s)
        # a socket left behind (the front end cannot remove it from a root-owned directory)
        r = ctl(s, "status")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"h2pool is not running|no control socket at")
        # and the next start replaces it
        s.start()
        h2ptest.wait_until(lambda: ctl(s, "status").returncode == 0, what="the restarted server to answer")

    def test_socket_in_use_or_not_a_socket_fails_the_start(self):
        s = self.server()
        twin = h2ptest.Server(CONF.replace("{port:http}", "{port:other}").replace("../run/h2pool.sock", self.sock(s)),
                              {"www/index.html": "x"}, expect_start=False)
        self.addCleanup(twin.cleanup)
        twin.start()
        self.assertEqual(twin.proc.wait(30), 1)
        self.assertIn("is in use: another h2pool runs with it", twin.read_log())
        self.assertEqual(ctl(s, "status").returncode, 0)  # the first one still has it
        plain = h2ptest.Server(CONF.replace("{port:http}", "{port:other}"), {"www/index.html": "x", "run/h2pool.sock": "data"},
                               expect_start=False)
        self.addCleanup(plain.cleanup)
        plain.start()
        self.assertEqual(plain.proc.wait(30), 1)
        self.assertIn("exists and is not a socket", plain.read_log())
        with open(plain.path("run/h2pool.sock")) as f:
            self.assertEqual(f.read(), "data")  # untouched

    # ---- who may connect --------------------------------------------------------------------

    @unittest.skipUnless(AS_ROOT, "needs root to own the socket as server.user and to run clients as other users")
    def test_socket_is_0600_and_owned_by_the_server_user(self):
        s = self.server()
        st = os.lstat(self.sock(s))
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(pwd.getpwuid(st.st_uid).pw_name, SERVER_USER)
        www = pwd.getpwnam(SERVER_USER)
        r = ctl(s, "status", user=(www.pw_uid, www.pw_gid), socket_path=self.sock(s))
        self.assertEqual(r.returncode, 0, r.stderr)  # the server's own user may
        nobody = pwd.getpwnam("nobody")
        r = ctl(s, "status", user=(nobody.pw_uid, nobody.pw_gid), socket_path=self.sock(s))
        self.assertEqual(r.returncode, 1)
        self.assertIn("permission denied on", r.stderr)  # the file mode stops it first

    @unittest.skipUnless(AS_ROOT, "needs root to run clients as other users")
    def test_peer_credentials_refuse_other_users_whatever_the_mode(self):
        s = self.server()
        os.chmod(self.sock(s), 0o666)  # as if an admin opened it up: SO_PEERCRED still decides
        www = pwd.getpwnam(SERVER_USER)
        nobody = pwd.getpwnam("nobody")
        others = [(nobody.pw_uid, nobody.pw_gid), (54321, 54321),  # a uid without an account
                  (nobody.pw_uid, www.pw_gid),  # the server's group is not enough
                  (www.pw_uid + 1, www.pw_gid)]
        for user in others:
            with self.subTest(user=user):
                for args in (["status"], ["stop", "site", "a"], ["reload"], ["list", "requests"]):
                    r = ctl(s, *args, user=user, socket_path=self.sock(s))
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                    self.assertIn("permission denied: uid %d" % user[0], r.stderr)
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 200)  # the stop above did nothing
        # a raw client of another uid gets the refusal and EOF, whatever it sends
        script = "\n".join([
            "import socket, sys",
            "c = socket.socket(socket.AF_UNIX)",
            "c.connect(sys.argv[1])",
            "try:",
            "    c.sendall(b'{\"command\": \"stop\", \"type\": \"site\", \"name\": \"a\"}\\n' * 100)",
            "except OSError:",
            "    pass",
            "data = b''",
            "while True:",
            "    try:",
            "        b = c.recv(65536)",
            "    except ConnectionResetError:",  # (closed with our requests unread: the answer came first)
            "        break",
            "    if not b:",
            "        break",
            "    data += b",
            "sys.stdout.write(data.decode())"])
        r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                            "python3", "-c", script, self.sock(s)], capture_output=True, text=True, timeout=60)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, r.stdout + r.stderr)
        self.assertEqual(json.loads(lines[0])["code"], "permission_denied")
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 200)
        h2ptest.log_shows(s, "control socket: refused a client: permission denied: uid")
        r = ctl(s, "status", user=(www.pw_uid, www.pw_gid), socket_path=self.sock(s))
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- what any client may send ------------------------------------------------------------
        h2ptest.stop_cleanly(s)

    def test_bad_requests_get_an_answer_and_the_connection_goes_on(self):
        s = self.server()
        c = self.raw(s)
        cases = [
            (b"garbage", "bad_request", "not JSON"),
            (b"\x00\x01\x02\xff\xfe", "bad_request", "not JSON"),
            (b'{"command": "status"', "bad_request", "not JSON"),
            (b"[1, 2]", "bad_request", "a request is a JSON object"),
            (b'"status"', "bad_request", "a request is a JSON object"),
            (b"42", "bad_request", "a request is a JSON object"),
            (b"null", "bad_request", "a request is a JSON object"),
            (b"{}", "bad_request", 'no "command"'),
            (b'{"command": 7}', "bad_request", '"command" must be a string'),
            (b'{"command": "status", "extra": "x"}', "bad_request", 'unknown key "extra"'),
            (b'{"command": "status", "command": "reload"}', "bad_request", "duplicate"),
            (b'{"command": "frob"}', "unknown_command", 'unknown command "frob"'),
            (b'{"command": "st\\u0000atus"}', "bad_request", "not JSON"),
            (b'{"command": "list"}', "bad_request", "list what?"),
            (b'{"command": "list", "what": "everything"}', "unknown_command", 'cannot list "everything"'),
            (b'{"command": "stop", "type": "site"}', "bad_request", "needs a type"),
            (b'{"command": "stop", "type": "galaxy", "name": "a"}', "unknown_command", 'cannot stop a "galaxy"'),
            (b'{"command": "recycle", "type": "site", "name": "a"}', "unknown_command", 'cannot recycle a "site"'),
            (b'{"command": "stop", "type": "site", "name": "nosuch"}', "unknown_name", 'no site named "nosuch"'),
            (b'{"command": "stop", "type": "site", "name": "' + b"x" * 5000 + b'"}', "unknown_name", "..."),
            (b'{"command": "stop", "type": "pool", "name": "\\u2028\\n\\"\\\\"}', "unknown_name", r"\xE2\x80\xA8\x0A\x22\x5C"),
            (b'{"command": "stop", "type": "site", "name": 3}', "bad_request", '"name" must be a string'),
            ('{"command": "zürich"}'.encode(), "unknown_command", r'"z\xC3\xBCrich"'),
        ]
        for data, code, message in cases:
            with self.subTest(data=data[:60]):
                c.send(data + b"\n")
                answer = c.line()
                self.assertIsNotNone(answer)
                self.assertEqual((answer["ok"], answer["code"]), (False, code), answer)
                self.assertIn(message, answer["error"])
                self.assertLess(len(answer["error"]), 600)
        # after all that, the same connection still works; an empty line asks nothing
        c.send(b"\n\r\n\n")
        self.assertEqual(c.ask({"command": "status"})["ok"], True)
        self.assertEqual(request(s.port(), "a.test", "/index.html")[0], 200)  # nothing was stopped
        h2ptest.stop_cleanly(s)

    def test_pipelined_split_and_half_closed_requests(self):
        s = self.server()
        # fifty requests in one write: fifty answers, in order
        c = self.raw(s)
        lines = [{"command": "list", "what": w} for w in ("sites", "pools", "workers", "requests")] * 12 + [
            {"command": "status"}, {"command": "frob"}]
        c.send(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
        answers = [c.line() for _ in lines]
        for x, a in zip(lines[:48], answers[:48]):
            self.assertIn(x["what"], a)
        self.assertIn("status", answers[48])
        self.assertEqual(answers[49]["code"], "unknown_command")
        # one byte at a time, CRLF ended
        c2 = self.raw(s)
        for byte in b'{"command": "list", "what": "sites"}\r\n':
            c2.send(bytes([byte]))
        self.assertIn("sites", c2.line())
        # half-closed: the request, then EOF; the answer comes, then the server closes
        c3 = self.raw(s)
        c3.send(b'{"command": "list", "what": "pools"}\n')
        c3.sock.shutdown(socket.SHUT_WR)
        self.assertIn("pools", c3.line())
        self.assertTrue(c3.at_eof())
        # the last request without its newline, then EOF: answered too
        c4 = self.raw(s)
        c4.send(b'{"command": "list", "what": "sites"}')
        c4.sock.shutdown(socket.SHUT_WR)
        self.assertIn("sites", c4.line())
        self.assertTrue(c4.at_eof())
        # a partial line, then EOF: nothing to answer, closed
        c5 = self.raw(s)
        c5.send(b'{"command": "stop", "type": "site", "na')
        c5.sock.shutdown(socket.SHUT_WR)
        answer = c5.line()
        self.assertEqual(answer["code"], "bad_request")  # (it is the last request, and it is not JSON)
        self.assertTrue(c5.at_eof())
        h2ptest.stop_cleanly(s)

    def test_oversized_requests_are_refused_and_closed(self):
        s = self.server()
        for size, newline in ((64 * 1024 + 1, False), (1 << 20, False), (200 * 1024, True)):
            with self.subTest(size=size, newline=newline):
                c = self.raw(s)
                data = b'{"command": "status", "pad": "' + b"x" * size + b'"}' + (b"\n" if newline else b"")
                try:
                    c.send(data)
                except OSError:
                    pass  # (it may close before taking it all)
                answer = c.line()
                self.assertEqual(answer["code"], "too_long", answer)
                self.assertTrue(c.at_eof())
        # exactly at the limit is still read (and then judged)
        c = self.raw(s)
        body = b'{"command": "status", "pad": "'
        c.send(body + b"x" * (64 * 1024 - len(body) - 2) + b'"}\n')
        self.assertEqual(c.line()["code"], "bad_request")  # unknown key "pad": it was read whole
        self.assertEqual(ctl(s, "status").returncode, 0)
        h2ptest.stop_cleanly(s)

    def test_clients_that_vanish_or_crowd_do_no_harm(self):
        s = self.server()
        # more than 16 at once (first, while no other client is connected): the others are told and closed
        held = [self.raw(s) for _ in range(16)]
        extra = self.raw(s)
        answer = extra.line()
        self.assertEqual(answer["code"], "busy")
        self.assertTrue(extra.at_eof())
        for c in held:
            c.close()
        h2ptest.wait_until(lambda: ctl(s, "status").returncode == 0, what="room for a client again")
        # connect and go, at once or mid-request, or mid-answer
        for i in range(100):
            c = Raw(self.sock(s))
            if i % 3 == 1:
                c.send(b'{"command": "sta')
            elif i % 3 == 2:
                c.send(b'{"command": "status"}\n' * 20)
            c.close()
        h2ptest.wait_until(lambda: ctl(s, "status").returncode == 0, what="the server to answer")
        # a client that sends and never reads: answers wait for it, others are served meanwhile
        flood = self.raw(s)
        flood.sock.setblocking(False)
        sent = 0
        try:
            while sent < 8 << 20:
                sent += flood.sock.send(b'{"command": "status"}\n' * 1000)
        except BlockingIOError:
            pass
        self.assertLess(sent, 8 << 20)  # it stopped reading from that client: its requests wait in the kernel
        self.assertEqual(ctl(s, "status").returncode, 0)
        flood.close()
        self.assertEqual(ctl(s, "list", "sites").returncode, 0)
        h2ptest.stop_cleanly(s)


if __name__ == "__main__":
    unittest.main()
