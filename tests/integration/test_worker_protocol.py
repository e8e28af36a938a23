"""What a worker may and may not do to the front end and to other clients: bytes written out of
turn (after its response ended) never reach another request, many distinct request_timeout
values do not stall a front-end thread, and a worker's own Server/Date headers do not duplicate
h2pool's.

Real h2pool, the libfcgi test apps and tests/apps/stray_fcgi.c (which speaks FastCGI by hand).
"""
import json
import os
import re
import subprocess
import unittest
from concurrent.futures import ThreadPoolExecutor

import h2ptest

from test_pool import count_in_log, log_shows, request


def site_yaml(handlers, threads=2):
    """server + one site on {port:http}; `handlers` are (path pattern, pool) pairs."""
    lines = ["server:", f"  threads: {threads}", "sites:", "  t:", '    bindings: ["http://127.0.0.1:{port:http}"]',
             '    root: "{php}"', "    handlers:"]
    lines += [f'      - {{path: "{path}", pool: {pool}}}' for path, pool in handlers]
    return "\n".join(lines) + "\n"


def pools_yaml(pools):
    lines = ["pools:"]
    for name, settings in pools.items():
        lines += [f"  {name}:", "    {worker_user}"]
        lines += [f"    {key}: {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


class ManyRequestTimeoutsTest(unittest.TestCase):
    """Each pool's request_timeout is a timer list on every front-end thread: any number of
    distinct values, across reloads, must keep every thread serving."""

    NUM_POOLS = 40

    def write_pools(self, srv, base_ms):
        pools = {f"p{i}": {"command": ["{apps}/hello_fcgi"], "max_processes": 1, "request_timeout": f"{base_ms + i}ms"}
                 for i in range(self.NUM_POOLS)}
        tmp = srv.path("conf.d/.pools.tmp")
        with open(tmp, "w") as f:
            f.write(srv.expand(pools_yaml(pools)))
        os.rename(tmp, srv.path("conf.d/pools.yaml"))

    def request_every_pool(self, srv, rounds=4):
        """Each pool `rounds` times, each request on its own connection (the kernel spreads them
        over the threads); a stalled thread shows as a request that times out."""
        paths = [f"/p{i}/x" for i in range(self.NUM_POOLS)] * rounds
        failing = []

        def one(path):
            if failing:  # one stalled request is enough: the rest would each wait for their timeout
                return (0, {}, b"not sent")
            try:
                return request(srv.port(), path, timeout=15)
            except OSError as e:
                failing.append(path)
                return (0, {}, repr(e).encode())

        with ThreadPoolExecutor(max_workers=8) as ex:
            results = list(ex.map(one, paths))
        failed = [(p, r[0], r[2][:100]) for p, r in zip(paths, results) if r[0] != 200 or r[2] != b"hello from fastcgi\n"]
        self.assertEqual(failed[:5], [], f"{len(failed)} of {len(paths)} requests failed")

    def check(self, threads):
        handlers = [(f"/p{i}/*", f"p{i}") for i in range(self.NUM_POOLS)]
        srv = h2ptest.Server(site_yaml(handlers, threads=threads))
        self.addCleanup(srv.cleanup)
        self.write_pools(srv, 30000)
        srv.start()
        self.request_every_pool(srv)
        for base in [31000, 32000, 30000, 33000]:
            reloads = srv.read_log().count("configuration reloaded")
            self.write_pools(srv, base)  # every value changes: 40 new pools, 40 more distinct durations
            h2ptest.wait_until(lambda: srv.read_log().count("configuration reloaded") > reloads, what="reload")
            self.request_every_pool(srv)
        h2ptest.stop_cleanly(srv)

    def test_forty_distinct_request_timeouts_two_threads(self):
        self.check(threads=2)

    def test_forty_distinct_request_timeouts_one_thread(self):
        self.check(threads=1)


STRAY_MODES = ["same-write", "same-write-next", "extra-stdout", "then-close", "delayed", "delayed-next", "on-next",
               "on-next-next"]
ANSWER = re.compile(rb"pid=(\d+) id=\d+ cookie=marker=(\S+)\n")


class OutOfTurnTest(unittest.TestCase):
    """A worker that writes after its response ended (tests/apps/stray_fcgi.c) is replaced, and
    what it wrote (a forged response carrying the previous client's cookie) reaches nobody."""

    def start_server(self, modes, threads=2):
        pools = {f"s{i}": {"command": ["{apps}/stray_fcgi"], "max_processes": 1} for i in range(len(modes))}
        srv = h2ptest.Server(site_yaml([(f"/s{i}/*", f"s{i}") for i in range(len(modes))], threads=threads) +
                             pools_yaml(pools))
        self.addCleanup(srv.cleanup)
        return srv.start()

    def get(self, srv, path, marker):
        status, _, body = request(srv.port(), path, headers={"Cookie": f"marker={marker}"})
        self.assertEqual(status, 200, body)
        self.assertNotIn(b"LEAKED", body)
        m = ANSWER.fullmatch(body)
        self.assertIsNotNone(m, body)
        self.assertEqual(m.group(2).decode(), marker, "a response carried another request's cookie")
        return int(m.group(1))

    def check_mode(self, srv, pool, mode):
        first = self.get(srv, f"/{pool}/a?stray={mode}", f"{pool}-first")  # the answer that completed is delivered
        if not mode.startswith("on-next"):  # (those misbehave only once the next request is there)
            log_shows(srv, rf"worker {first} wrote out of turn")
        pids = {self.get(srv, f"/{pool}/b{n}", f"{pool}-then-{n}") for n in range(6)}
        self.assertNotIn(first, pids, "the worker that wrote out of turn still serves")
        self.assertEqual(len(pids), 1, pids)  # one replacement, which behaves
        log_shows(srv, rf"pool {pool}: worker {first} wrote out of turn .*replacing it \(protocol violation \d+ in this pool\)")
        h2ptest.wait_until(lambda: not h2ptest.process_alive(first), what=f"worker {first} to be gone")

    def test_stray_bytes_never_reach_a_client_and_the_worker_is_replaced(self):
        srv = self.start_server(STRAY_MODES)
        for i, mode in enumerate(STRAY_MODES):
            with self.subTest(mode=mode):
                self.check_mode(srv, f"s{i}", mode)
        self.assertEqual(count_in_log(srv, r"protocol violation"), len(STRAY_MODES))
        h2ptest.stop_cleanly(srv)

    def test_stray_bytes_on_one_thread(self):
        modes = ["delayed", "on-next", "same-write-next"]
        srv = self.start_server(modes, threads=1)  # the kept connection is always reused, never reopened
        for i, mode in enumerate(modes):
            with self.subTest(mode=mode):
                self.check_mode(srv, f"s{i}", mode)
        h2ptest.stop_cleanly(srv)

    def test_stray_bytes_over_http2(self):
        srv = self.start_server(["delayed", "on-next"])
        for i, mode in enumerate(["delayed", "on-next"]):
            pool = f"s{i}"
            r = srv.get(f"/{pool}/a?stray={mode}", "--http2-prior-knowledge", "-H", f"Cookie: marker={pool}-h2-first")
            self.assertEqual((r.status, r.version), (200, "2"), r)
            first = int(ANSWER.fullmatch(r.body).group(1))
            if mode == "delayed":
                log_shows(srv, rf"worker {first} wrote out of turn")
            for n in range(4):
                r = srv.get(f"/{pool}/b{n}", "--http2-prior-knowledge", "-H", f"Cookie: marker={pool}-h2-{n}")
                self.assertEqual(r.status, 200, r)
                m = ANSWER.fullmatch(r.body)
                self.assertIsNotNone(m, r)
                self.assertEqual(m.group(2).decode(), f"{pool}-h2-{n}")
                self.assertNotEqual(int(m.group(1)), first)
        h2ptest.stop_cleanly(srv)

    def test_worker_that_closes_its_connection_between_requests_is_kept(self):
        srv = self.start_server(["close"])
        first = self.get(srv, "/s0/a?stray=close", "close-first")
        # its hang-up is no violation: the next requests go to it over a new connection
        for n in range(4):
            self.assertEqual(self.get(srv, f"/s0/b{n}?stray=close", f"close-{n}"), first)
        self.assertEqual(count_in_log(srv, r"protocol violation"), 0)
        h2ptest.stop_cleanly(srv)


def header_lines(url, *args):
    """The response head as curl received it: [(lower-case name, value)], repeated headers kept."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "20"] + list(args) + [url],
                         capture_output=True, text=True, timeout=30).stdout
    return [(name.strip().lower(), value.strip())
            for name, sep, value in (line.partition(":") for line in out.splitlines()[1:]) if sep]


HEADERS_CONF = """
server: {threads: 2}
pools:
  stray: {command: ["{apps}/stray_fcgi"], max_processes: 1, {worker_user}}
  php: {command: [/usr/bin/php-cgi], max_processes: 1, {worker_user}}
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: "{dir}/www"
    handlers:
      - {path: "/cgi-bin/*.cgi", cgi: true}
      - {path: "/app/*", pool: stray}
      - {path: "*.php", pool: php}
"""

SERVER_DATE_CGI = ("#!/bin/sh\nprintf 'Server: cgi-app/1.0\\r\\nDate: Thu, 01 Jan 1970 00:00:00 GMT\\r\\n"
                   "X-Pad: avoid browser bug\\r\\nContent-Type: text/plain\\r\\n\\r\\ncgi\\n'\n")


class FrontEndHeadersTest(unittest.TestCase):
    """libh2o writes Server and Date on every response: a worker's or CGI script's own are
    dropped (as nginx hides an upstream's Date, Server and X-Pad), so each appears once."""

    def test_one_server_and_one_date_header(self):
        with open(os.path.join(h2ptest.PHP_APPS, "server_date.php")) as f:
            php = f.read()
        srv = h2ptest.Server(HEADERS_CONF.replace(", {worker_user}", ", user: root" if os.geteuid() == 0 else ""),
                             files={"www/server_date.php": php})
        srv.write("www/cgi-bin/server_date.cgi", SERVER_DATE_CGI, mode=0o755)
        self.addCleanup(srv.cleanup)
        srv.start()
        for path in ["/app/x?headers=1", "/server_date.php", "/cgi-bin/server_date.cgi"]:
            for proto in [["--http1.1"], ["--http2-prior-knowledge"]]:
                with self.subTest(path=path, proto=proto):
                    lines = header_lines(srv.url(path), *proto)
                    names = [n for n, _ in lines]
                    self.assertEqual(names.count("server"), 1, lines)
                    self.assertEqual(names.count("date"), 1, lines)
                    self.assertEqual(names.count("x-pad"), 0, lines)
                    self.assertNotIn("app/1.0", dict(lines)["server"])  # h2pool's, not the application's
                    self.assertNotIn("1970", dict(lines)["date"])
                    self.assertTrue(dict(lines).get("content-type", "").startswith("text/plain"), lines)


if __name__ == "__main__":
    h2ptest.main()
