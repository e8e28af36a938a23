"""The php-cgi master layout (the default for `command: [php-cgi]`): one php-cgi master with
PHP_FCGI_CHILDREN=max_processes + 1 children forked after PHP's startup (a child per slot and a
spare), max_processes slots of the pool each with at most one connection to its socket.

Real h2pool, real php-cgi (tests/apps/php), processes checked by pid through /proc.  Every test runs
its own server.
"""
import collections
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import h2ptest


def make_conf(settings, server_extra=(), command="php-cgi", threads=2):
    lines = ["server:", f"  threads: {threads}", "  control_socket: ../run/h2pool.sock"]
    lines += ["  " + line for line in server_extra]
    lines += ["pools:", "  php:", "    {worker_user}", f'    command: ["{command}"]']
    for key, value in settings.items():
        lines.append(f"    {key}: {json.dumps(value)}")
    lines += ["sites:", "  t:", '    bindings: ["http://127.0.0.1:{port:http}"]', '    root: "{php}"', "    handlers:",
              '      - {path: "*.php", pool: php}']
    return "\n".join(lines) + "\n"


def request(port, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def concurrent(port, paths):
    def one(path):
        try:
            return request(port, path)
        except OSError as e:
            return (0, repr(e).encode())

    with ThreadPoolExecutor(max_workers=len(paths)) as ex:
        return list(ex.map(one, paths))


def ctl(server, *args):
    cmd = [h2ptest.BIN, "ctl", "-c", server.conf] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def worker_rows(server):
    r = ctl(server, "--json", "list", "workers")
    return json.loads(r.stdout)["workers"]


def count_in_log(server, pattern):
    return len(re.findall(pattern, server.read_log()))


class PhpMasterTest(unittest.TestCase):
    def server(self, settings, files=None, **kw):
        s = h2ptest.Server(make_conf(settings, **kw), files=files)
        os.makedirs(s.path("run"), exist_ok=True)
        self.addCleanup(s.cleanup)
        s.start()
        h2ptest.wait_until(lambda: os.path.exists(s.path("run/h2pool.sock")), what="the control socket")
        return s

    def master_and_children(self, s, slots):
        """The one master (the spawner's only child) once it has a child for each of its `slots`
        and a spare."""
        children = slots + 1

        def ready():
            masters = s.workers()
            if len(masters) != 1:
                return None
            kids = h2ptest.children_of(masters[0])
            return (masters[0], sorted(kids)) if len(kids) == children else None

        return h2ptest.wait_until(ready, what=f"one php-cgi master with {children} children")

    def slow_requests_in_flight(self, s, n, ms):
        """`n` requests to sleep.php for `ms` ms, sent from a thread, once `n` slots are busy with
        them: (the thread, the list its results go to)."""
        results = []
        t = threading.Thread(target=lambda: results.extend(concurrent(s.port(), [f"/sleep.php?ms={ms}"] * n)))
        t.start()
        h2ptest.wait_until(lambda: [r["state"] for r in worker_rows(s)].count("busy") == n, what=f"{n} busy slots")
        return t, results

    def test_one_master_with_max_processes_children_serving(self):
        s = self.server({"max_processes": 3}, server_extra=["management: 127.0.0.1:{port:mgmt}"])
        self.assertEqual(s.workers(), [])  # lazily, on the first request
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        master, kids = self.master_and_children(s, 3)
        self.assertIn(int(body), kids)
        self.assertNotIn(master, kids)
        # the master leads its own process group (php-cgi signals that group when it stops)
        self.assertEqual(os.getpgid(master), master)
        self.assertNotEqual(os.getpgid(s.proc.pid), master)
        self.assertIn(b"PHP_FCGI_CHILDREN=4\n", request(s.port(), "/env.php")[1])
        # concurrent requests are served by several children, never by the master
        results = concurrent(s.port(), ["/sleep.php?ms=300"] * 9)
        self.assertEqual([r[0] for r in results], [200] * 9, results)
        served = {int(r[1]) for r in results}
        self.assertGreaterEqual(len(served), 2, served)
        self.assertLessEqual(served, set(kids))
        # one row per slot (the master's pid) and one for the master
        rows = worker_rows(s)
        self.assertEqual(collections.Counter(r.get("role") for r in rows), {"slot": 3, "master": 1}, rows)
        self.assertEqual({r["pid"] for r in rows}, {master})
        self.assertEqual([r["state"] for r in rows if r["role"] == "master"], ["running"])
        self.assertEqual(count_in_log(s, r"spawned php-cgi master"), 1)
        # /metrics: one series per process (the master's counts its slots' requests), none twice
        conn = http.client.HTTPConnection("127.0.0.1", s.port("mgmt"), timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        series = re.findall(r'^h2pool_worker_requests_total\{pool="php",pid="(\d+)"\} (\d+)$', metrics, re.M)
        self.assertEqual([(int(pid), int(n)) for pid, n in series], [(master, 11)], metrics)

    def test_children_recycled_by_php_cgi_master_stays(self):
        s = self.server({"max_processes": 2, "max_requests": 5}, threads=1)
        seen = []
        for _ in range(50):
            status, body = request(s.port(), "/pid.php")
            self.assertEqual(status, 200, body)
            seen.append(int(body))
        master = s.workers()
        self.assertEqual(len(master), 1)
        # each child served 5 requests on its slot's connection, then h2pool ended it, and php-cgi
        # forked a new one from the master (php-cgi's own limit is one more: never reached here)
        counts = collections.Counter(seen)
        self.assertLessEqual(max(counts.values()), 5, counts)
        h2ptest.log_shows(s, r"a php-cgi child of master \d+ served 5 requests \(max_requests 5\): ending it")
        self.assertGreaterEqual(len(counts), 10, counts)
        self.assertNotIn(master[0], counts)
        self.assertEqual(count_in_log(s, r"spawned php-cgi master"), 1)
        self.assertEqual(count_in_log(s, r"spawned worker"), 0)
        self.assertNotIn("crash", s.read_log())
        self.assertEqual(s.workers(), master)

    def test_the_spare_child_takes_over_from_one_that_ends(self):
        # one slot, so two children: the one serving it and a spare waiting in accept(); h2pool
        # ends the serving one after its 3rd request, and the 4th goes to the spare that was
        # already there, not to the fork php-cgi makes once it has seen the exit.  (One thread: a slot's
        # kept connection taken by another thread is closed there, and the slot connects anew.)
        s = self.server({"max_processes": 1, "max_requests": 3}, threads=1)
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        master, kids = self.master_and_children(s, 1)
        first = int(body)
        self.assertIn(first, kids)
        spare = [p for p in kids if p != first]
        for _ in range(2):
            self.assertEqual(request(s.port(), "/pid.php"), (200, f"{first}\n".encode()))
        h2ptest.wait_until(lambda: not h2ptest.process_alive(first), what="the first child to end at its limit")
        self.assertEqual(request(s.port(), "/pid.php"), (200, f"{spare[0]}\n".encode()))
        h2ptest.log_shows(s, r"a php-cgi child of master \d+ served 3 requests \(max_requests 3\): ending it")
        _, kids_after = self.master_and_children(s, 1)  # and php-cgi forked the next spare
        self.assertIn(spare[0], kids_after)
        self.assertNotIn("crash", s.read_log())

    def test_an_idle_slot_keeps_its_child_through_ping_intervals(self):
        # a slot idle past the ping interval keeps its connection, so its child and that child's
        # count: h2pool still ends it at max_requests (a ping on a new connection went to the
        # spare, and the child then ended at php-cgi's own limit, the costly way)
        s = self.server({"max_processes": 1, "max_requests": 4, "ping": {"interval": "1s"}}, threads=1)
        pids = [request(s.port(), "/pid.php") for _ in range(2)]
        time.sleep(2.5)
        pids += [request(s.port(), "/pid.php") for _ in range(2)]
        self.assertEqual([p[0] for p in pids], [200] * 4, pids)
        self.assertEqual(len({p[1] for p in pids}), 1, pids)
        h2ptest.log_shows(s, r"a php-cgi child of master \d+ served 4 requests \(max_requests 4\): ending it")

    def test_a_busy_slot_keeps_its_child_across_threads(self):
        # two threads, one slot, many clients: the slot goes from one thread's request to the
        # other's with its connection (not closed there and made anew, which the spare would
        # accept), so one child serves them, and its count of requests holds
        s = self.server({"max_processes": 1}, threads=2)
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        self.master_and_children(s, 1)
        # the slot is held while all the others queue (on both threads), then hands itself on
        t, first = self.slow_requests_in_flight(s, 1, 1500)
        results = concurrent(s.port(), ["/sleep.php?ms=5"] * 16 * 8)
        t.join()
        self.assertEqual({r[0] for r in results + first}, {200}, results[:3])
        counts = collections.Counter(int(r[1]) for r in results)
        self.assertGreaterEqual(counts.most_common(1)[0][1], len(results) * 9 // 10, counts)

    def test_opcache_is_shared_by_the_children(self):
        s = self.server({"max_processes": 1, "max_requests": 2}, threads=1)  # (one thread: one connection)
        status, body = request(s.port(), "/opcache.php")
        self.assertEqual(status, 200, body)
        first_pid, hits = map(int, body.split())
        if hits < 0:
            self.skipTest("php-cgi has no opcache enabled")
        # the second request recycles the child; the third is the spare's first: an opcache of its
        # own would have no hit yet
        self.assertEqual(request(s.port(), "/opcache.php")[0], 200)
        status, body = request(s.port(), "/opcache.php")
        self.assertEqual(status, 200, body)
        pid, hits = map(int, body.split())
        self.assertNotEqual(pid, first_pid)
        self.assertGreater(hits, 0, body)

    def test_child_killed_mid_request_is_a_crash_and_stops_the_pool(self):
        s = self.server({"max_processes": 2, "retry_on_crash": False, "rapid_fail": {"max_crashes": 3, "interval": "1m"}})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master = s.workers()
        for _ in range(3):
            status, _ = request(s.port(), "/die.php")
            self.assertEqual(status, 502)
        h2ptest.log_shows(s, r"stopped by rapid-fail protection")
        h2ptest.wait_until(lambda: count_in_log(s, r"a php-cgi child of master \d+ hung up before its response ended") == 3,
                           what="three crashes in the log")
        # stopped: 503 at once, and the master is stopped with its children
        self.assertEqual(request(s.port(), "/pid.php", timeout=10)[0], 503)
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in master), what="the master to stop")
        self.assertEqual(ctl(s, "start", "pool", "php").returncode, 0)
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)

    def test_child_killed_mid_request_is_retried(self):
        # retry_on_crash (the default): a GET whose child died before any output goes to another slot
        s = self.server({"max_processes": 2})
        status, _ = request(s.port(), "/die.php")
        self.assertEqual(status, 502)  # (its retry dies too)
        h2ptest.wait_until(lambda: count_in_log(s, r"hung up before its response ended: counted as a crash") >= 2,
                           what="two crashes in the log")  # (the log is written by its own thread)
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)

    def test_sigkilled_master_leaves_no_orphan_and_is_replaced(self):
        s = self.server({"max_processes": 3})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master, kids = self.master_and_children(s, 3)
        # two requests in flight: their children die with the master (one crash, not three), and
        # each GET goes again to the next master (retry_on_crash)
        t, results = self.slow_requests_in_flight(s, 2, 2000)
        os.kill(master, signal.SIGKILL)
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [master]),
                           what="the master's children to be killed")
        h2ptest.log_shows(s, rf"php-cgi master {master} exited unexpectedly")
        t.join()
        self.assertEqual([r[0] for r in results], [200, 200], results)
        self.assertEqual(count_in_log(s, r"counted as a crash"), 0)  # (the master's exit is the one crash)
        self.assertEqual(count_in_log(s, r"exited unexpectedly"), 1)
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        new_master, new_kids = self.master_and_children(s, 3)
        self.assertNotEqual(new_master, master)
        self.assertIn(int(body), new_kids)

    def test_master_process_group_killed_is_one_crash(self):
        # the whole process group dies at once (SIGTERM to the master, which php-cgi passes on to its
        # group; kill -9 -pgid, as the OOM killer of a cgroup would): each busy child's lost
        # connection is part of the master's one crash, not one crash more (rapid_fail: 3 of them)
        s = self.server({"max_processes": 4, "rapid_fail": {"max_crashes": 3, "interval": "1m"}})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        kills = [lambda master: os.kill(master, signal.SIGTERM), lambda master: os.killpg(master, signal.SIGKILL)]
        for n, kill in enumerate(kills, 1):
            master, kids = self.master_and_children(s, 4)
            t, results = self.slow_requests_in_flight(s, 4, 5000)
            kill(master)
            t.join()
            h2ptest.log_shows(s, rf"php-cgi master {master} exited unexpectedly")
            status, body = request(s.port(), "/pid.php")
            self.assertEqual(status, 200, body)
            new_master, new_kids = self.master_and_children(s, 4)
            self.assertNotEqual(new_master, master)
            self.assertIn(int(body), new_kids)
            results = concurrent(s.port(), ["/pid.php"] * 4)
            self.assertEqual([r[0] for r in results], [200] * 4, results)
            log = s.read_log()
            self.assertNotIn("stopped by rapid-fail protection", log)
            self.assertEqual(count_in_log(s, r"counted as a crash"), 0, log)
            self.assertEqual(count_in_log(s, r"exited unexpectedly"), n, log)

    def test_idle_timeout_and_stop_end_the_master_and_its_children(self):
        s = self.server({"max_processes": 2, "idle_timeout": "1s"})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master, kids = self.master_and_children(s, 2)
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [master]), what="idle_timeout")
        h2ptest.log_shows(s, rf"stopping php-cgi master {master} \(idle_timeout\)")
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master, kids = self.master_and_children(s, 2)
        self.assertEqual(ctl(s, "stop", "pool", "php").returncode, 0)
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [master]), what="stop pool")
        self.assertEqual(request(s.port(), "/pid.php", timeout=10)[0], 503)

    def test_stop_and_start_with_busy_slots_gives_back_every_slot(self):
        # a master whose slots were busy when the pool stopped finishes their requests and stops:
        # the start spawns a fresh master with all max_processes slots (not the old one's remaining)
        s = self.server({"max_processes": 3})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master, kids = self.master_and_children(s, 3)
        t, results = self.slow_requests_in_flight(s, 2, 2000)
        self.assertEqual(ctl(s, "stop", "pool", "php").returncode, 0)
        self.assertEqual(ctl(s, "start", "pool", "php").returncode, 0)
        t.join()
        self.assertEqual([r[0] for r in results], [200, 200], results)
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [master]), what="the old master to stop")
        # max_processes requests at once: each on a slot of its own, each served by another child
        results = concurrent(s.port(), ["/sleep.php?ms=1000"] * 3)
        self.assertEqual([r[0] for r in results], [200] * 3, results)
        new_master, new_kids = self.master_and_children(s, 3)
        self.assertNotEqual(new_master, master)
        self.assertEqual(len({int(r[1]) for r in results}), 3, results)
        self.assertLessEqual({int(r[1]) for r in results}, set(new_kids))
        rows = worker_rows(s)
        self.assertEqual(collections.Counter(r.get("role") for r in rows), {"slot": 3, "master": 1}, rows)

    def test_min_processes_starts_the_master(self):
        s = self.server({"max_processes": 2, "min_processes": 1})
        master, kids = self.master_and_children(s, 2)
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        self.assertIn(int(body), kids)
        self.assertEqual(s.workers(), [master])

    def test_recycle_and_reload_under_load_fail_no_request(self):
        """`h2pool ctl recycle pool` and a reload that changes the pool replace the master with
        overlap: a new master starts, new requests go to its slots while the old one's finish."""
        s = self.server({"max_processes": 2})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        first, _ = self.master_and_children(s, 2)
        results, done = [], threading.Event()

        def load():
            while not done.is_set():
                try:
                    results.append(request(s.port(), "/sleep.php?ms=20")[0])
                except OSError as e:
                    results.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            h2ptest.wait_until(lambda: len(results) >= 20, what="the load to run")
            r = ctl(s, "recycle", "pool", "php")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"recycling php-cgi master {first}", r.stdout)
            second, _ = self.master_and_children(s, 2)  # (the old one is gone: one master left)
            self.assertNotEqual(second, first)
            h2ptest.log_shows(s, rf"stopping php-cgi master {first} \(recycled by h2pool ctl\)")
            count = len(results)
            h2ptest.wait_until(lambda: len(results) >= count + 20, what="the load on the new master")
            # a reload that changes the pool: it drains, the new pool's master takes over
            reloads = s.read_log().count("configuration reloaded")
            s.write("conf.d/h2pool.yaml", s.expand(make_conf({"max_processes": 2, "max_requests": 777})))
            h2ptest.wait_until(lambda: s.read_log().count("configuration reloaded") > reloads, what="the reload")
            third = h2ptest.wait_until(
                lambda: (lambda m: m[0] if len(m) == 1 and m[0] != second else None)(s.workers()), what="the new pool's master")
            self.assertIn(b"PHP_FCGI_MAX_REQUESTS=778\n", request(s.port(), "/env.php")[1])  # (h2pool ends children at 777)
            count = len(results)
            h2ptest.wait_until(lambda: len(results) >= count + 20, what="the load on the third master")
        finally:
            done.set()
            for t in threads:
                t.join()
        self.assertNotEqual(third, first)
        self.assertEqual(collections.Counter(results), {200: len(results)}, collections.Counter(results))
        self.assertNotIn("crash", s.read_log())

    def test_drained_master_stops_with_min_processes_and_recycle_time(self):
        # a reload drains the pool while a slot is busy; recycle.time comes up meanwhile: the drained
        # pool's master is not replaced (its replacement would idle for ever: min_processes), it
        # stops once its request is done, and only the new pool's master is left
        settings = {"max_processes": 2, "min_processes": 1, "recycle": {"time": "2s"}}
        s = self.server(settings)
        first, _ = self.master_and_children(s, 2)
        results = []
        t = threading.Thread(target=lambda: results.append(request(s.port(), "/sleep.php?ms=4000")))
        t.start()
        h2ptest.wait_until(lambda: [r["state"] for r in worker_rows(s)].count("busy") == 1, what="a busy slot")
        reloads = s.read_log().count("configuration reloaded")
        s.write("conf.d/h2pool.yaml", s.expand(make_conf(dict(settings, max_requests=777))))
        h2ptest.wait_until(lambda: s.read_log().count("configuration reloaded") > reloads, what="the reload")
        t.join()
        self.assertEqual([r[0] for r in results], [200], results)
        h2ptest.wait_until(lambda: not h2ptest.process_alive(first), what="the drained master to stop")
        h2ptest.wait_until(lambda: len(s.workers()) == 1, what="only the new pool's master")
        self.assertIn(b"PHP_FCGI_MAX_REQUESTS=778\n", request(s.port(), "/env.php")[1])  # (h2pool ends children at 777)

    def test_recycle_time_and_memory_replace_the_master(self):
        s = self.server({"max_processes": 1, "recycle": {"time": "2s"}})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        first, kids = self.master_and_children(s, 1)
        h2ptest.log_shows(s, rf"recycling php-cgi master {first}: recycle.time")
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [first]), what="the old master to stop")
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        self.assertNotEqual(s.workers(), [first])
        # every child is above a 1 MiB limit: the master is recycled for its children's memory
        s = self.server({"max_processes": 1, "recycle": {"memory": "1MiB"}})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        first, kids = self.master_and_children(s, 1)
        h2ptest.log_shows(s, rf"recycling php-cgi master {first}: recycle.memory")
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [first]), what="the old master to stop")
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)

    def test_recycled_master_whose_replacement_failed_is_replaced_later(self):
        # the replacement of a recycled master fails to start: with min_processes 0 and no queue, the
        # pool asks for another after the start back-off, and the old master stops once it is ready
        flaky = "#!/bin/sh\n# php-cgi, or a failed start while ./fail exists\n" \
                '[ -e "$(dirname "$0")/fail" ] && exit 1\nexec php-cgi "$@"\n'
        s = self.server({"max_processes": 2, "rapid_fail": {"enabled": False}}, command="{dir}/php-cgi-flaky",
                        files={"php-cgi-flaky": flaky})
        os.chmod(s.path("php-cgi-flaky"), 0o755)
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        first, kids = self.master_and_children(s, 2)
        s.write("fail", "")
        r = ctl(s, "recycle", "pool", "php")
        self.assertEqual(r.returncode, 0, r.stderr)
        h2ptest.log_shows(s, r"failed to start")
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)  # (the old master serves meanwhile)
        os.unlink(s.path("fail"))
        h2ptest.wait_until(lambda: not any(h2ptest.process_alive(p) for p in kids + [first]), what="the old master to stop")
        h2ptest.log_shows(s, rf"stopping php-cgi master {first} \(recycled by h2pool ctl\)")
        second, _ = self.master_and_children(s, 2)
        self.assertNotEqual(second, first)
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)

    def test_request_timeout_is_504_and_kills_the_child(self):
        # the child serving the request is found by its end of our connection and killed; the
        # master forks another, and stays
        s = self.server({"max_processes": 2, "request_timeout": "1s"})
        self.assertEqual(request(s.port(), "/pid.php")[0], 200)
        master, kids = self.master_and_children(s, 2)
        results = concurrent(s.port(), ["/sleep.php?ms=30000", "/sleep.php?ms=30000"])
        self.assertEqual([r[0] for r in results], [504, 504], results)
        # the two that served them, not the spare
        killed = h2ptest.wait_until(lambda: (lambda dead: dead if len(dead) == 2 else None)(
            [p for p in kids if not h2ptest.process_alive(p)]), what="the children to be killed")
        self.assertTrue(any(h2ptest.process_alive(p) for p in kids))
        self.assertEqual(s.workers(), [master])
        self.assertNotIn("cannot tell which php-cgi child", s.read_log())
        self.assertNotIn("crash", s.read_log())
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        self.assertNotIn(int(body), killed)

    def test_zero_children_keeps_independent_processes(self):
        s = self.server({"max_processes": 2, "env": {"PHP_FCGI_CHILDREN": "0"}})
        status, body = request(s.port(), "/pid.php")
        self.assertEqual(status, 200, body)
        self.assertEqual(s.workers(), [int(body)])  # the spawner's own child serves: no master
        self.assertEqual(count_in_log(s, r"spawned worker"), 1)
        self.assertEqual(count_in_log(s, r"php-cgi master"), 0)


if __name__ == "__main__":
    h2ptest.main()
