"""Hot reload: config changes applied live without failing a request; broken changes refused."""
import glob
import os
import re
import signal
import subprocess
import threading
import time
import unittest

import socket

import h2ptest


served_cn = h2ptest.served_cn

SITE_MAIN = """
sites:
  main:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    handlers: [{path: "/app/*", pool: app}]
    modules:
      failed_request_tracing: {status: [400-599], dir: {dir}/traces}
"""
SITE_EXTRA = """
  extra:
    bindings: [http://127.0.0.1:{port:extra}]
    root: {dir}/www
    handlers: [{path: "/x/*", pool: extra}]
"""
POOLS = """
pools:
  app:
    command: [{apps}/hello_fcgi]
    max_processes: %d
    {worker_user}
"""
POOL_EXTRA = """
  extra:
    command: [{apps}/hello_fcgi]
    max_processes: 1
    {worker_user}
"""


def parse_h2load(out):
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m and codes, out
    return {"done": int(m.group(2)), "succeeded": int(m.group(3)), "failed": int(m.group(4)), "errored": int(m.group(5)),
            "non2xx": int(codes.group(3)) + int(codes.group(4)), "4xx": int(codes.group(3)), "5xx": int(codes.group(4))}


def failure_report(srv):
    """What a failed request left: its failed-request trace (the pipeline, the pool, the worker), and the error log."""
    traces = sorted(glob.glob(srv.path("traces/*.json")))
    lines = srv.read_log().splitlines()
    return "\n".join([open(t).read() for t in traces[:3]] + [l for l in lines if "[info]" not in l and "[notice]" not in l][-40:])


class ReloadTest(unittest.TestCase):
    def make_server(self):
        srv = h2ptest.Server("server: {threads: 2}\n", files={"www/index.html": "static\n"})
        self.addCleanup(srv.cleanup)
        return srv

    def write_config(self, srv, variant):
        """Variant A adds a site (own binding) and a pool; B removes them and changes pool app."""
        text = srv.expand(SITE_MAIN + (SITE_EXTRA if variant == "A" else "") +
                          POOLS % (4 if variant == "A" else 3) + (POOL_EXTRA if variant == "A" else ""))
        tmp = srv.path("conf.d/.sites.yaml.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, srv.path("conf.d/sites.yaml"))  # atomic, as editors and config tools do

    def test_flipping_config_under_load_fails_no_request(self):
        srv = self.make_server()
        self.write_config(srv, "A")
        srv.start()
        self.assertEqual(srv.get("/app/x").status, 200)
        urls = [srv.url("/index.html"), srv.url("/app/x")]
        duration = 30
        loads = [subprocess.Popen(["h2load", "--h1", "-c8", "-t1", f"-D{duration}"] + urls, stdout=subprocess.PIPE, text=True),
                 subprocess.Popen(["h2load", "-c4", "-m4", "-t1", f"-D{duration}"] + urls, stdout=subprocess.PIPE, text=True)]
        deadline = time.monotonic() + duration - 2
        flips, broken_written = 0, False
        while time.monotonic() < deadline:
            time.sleep(0.5)
            flips += 1
            if flips == 20 and not broken_written:
                with open(srv.path("conf.d/broken.yaml"), "w") as f:
                    f.write("sites:\n  oops: {bindings: [http://127.0.0.1:80a]}\n")
                broken_written = True
                continue
            if flips == 22:
                os.unlink(srv.path("conf.d/broken.yaml"))
            self.write_config(srv, "A" if flips % 2 == 0 else "B")
        results = [parse_h2load(p.communicate(timeout=60)[0]) for p in loads]
        for r in results:
            self.assertGreater(r["done"], 0)
            self.assertEqual((r["failed"], r["errored"], r["non2xx"]), (0, 0, 0), (r, failure_report(srv)))
        log = srv.read_log()
        self.assertGreater(log.count("configuration reloaded"), 20)
        self.assertRegex(log, r"broken\.yaml:2:\d+: sites\.oops\.bindings\[0\]: .*port")
        self.assertIn("refused", log)

    def test_broken_config_keeps_old_one_serving(self):
        srv = self.make_server()
        self.write_config(srv, "A")
        srv.start()
        with open(srv.path("conf.d/zz.yaml"), "w") as f:
            f.write("pools:\n  bad:\n    command: [x]\n    max_processes: many\n")
        h2ptest.wait_until(lambda: "refused" in srv.read_log(), what="the refusal in the log")
        self.assertRegex(srv.read_log(), r"zz\.yaml:4:\d+: pools\.bad\.max_processes")
        self.assertEqual(srv.get("/app/x").status, 200)
        self.assertEqual(h2ptest.curl(srv.url("/index.html", name="extra")).status, 200)

    def test_sighup_adds_and_removes_a_binding(self):
        srv = self.make_server()
        self.write_config(srv, "B")
        srv.start()
        self.assertEqual(h2ptest.curl(srv.url("/index.html", name="extra")).status, 0)  # refused: not bound
        self.write_config(srv, "A")
        srv.proc.send_signal(signal.SIGHUP)
        h2ptest.wait_until(lambda: h2ptest.curl(srv.url("/index.html", name="extra")).status == 200, what="the new binding")
        self.write_config(srv, "B")
        srv.proc.send_signal(signal.SIGHUP)
        h2ptest.wait_until(lambda: h2ptest.curl(srv.url("/index.html", name="extra")).status == 0, what="the binding to close")
        self.assertEqual(srv.get("/index.html").status, 200)

    def test_conf_d_changing_while_a_reload_reads_it_leaves_no_part_behind(self):
        """The spawner reads conf.d just before the front end does on a reload: files renamed
        between the two reads must not leave it holding another version (it then refused to bind
        the front end's new address: "no binding of the configuration the privileged part loaded",
        or to spawn its new pool), and a refused reload (conf.d still changing after 5 reads) must
        not leave it on the version it read last ("cannot start a worker: ... no pool extra").
        Both read again until they agree; the spawner takes a version once the front end commits
        to it."""
        srv = self.make_server()
        self.write_config(srv, "B")
        srv.start()
        variant, deadline = "B", time.monotonic() + 10
        while time.monotonic() < deadline:  # as fast as renames go: many land between the two reads
            variant = "A" if variant == "B" else "B"
            self.write_config(srv, variant)
        if variant == "B":
            self.write_config(srv, "A")  # (end on the variant with the extra binding and pool)
        h2ptest.wait_until(lambda: h2ptest.curl(srv.url("/x/y", name="extra")).status == 200,
                           what="the last version's binding and pool")
        self.assertEqual(srv.get("/app/x").status, 200)
        log = srv.read_log()
        self.assertGreater(log.count("configuration reloaded"), 2)
        self.assertNotIn("no binding of the configuration the privileged part loaded", log)
        self.assertNotIn("cannot start a worker", log)

    def test_refused_reload_leaves_the_spawner_on_the_running_configuration(self):
        """A reload refused after the spawner read conf.d (here a new binding's port is held by
        another process) leaves the spawner on the configuration still served, which it spawns
        the running pools by.  It used to keep what it had read, a version without pool `extra`:
        the running `extra` could no longer start a worker."""
        srv = self.make_server()
        self.write_config(srv, "A")
        srv.start()
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        taken = f"""
  taken:
    bindings: [http://127.0.0.1:{held.getsockname()[1]}]
    root: {{dir}}/www
"""
        tmp = srv.path("conf.d/.sites.yaml.tmp")
        with open(tmp, "w") as f:  # variant B (no pool extra) and a site on the held port
            f.write(srv.expand(SITE_MAIN + taken + POOLS % 3))
        os.rename(tmp, srv.path("conf.d/sites.yaml"))
        h2ptest.log_shows(srv, r"refused: .*127\.0\.0\.1:%d" % held.getsockname()[1])
        # pool extra's first request: its worker is spawned now, by the spawner's configuration
        self.assertEqual(h2ptest.curl(srv.url("/x/y", name="extra"), timeout=15).status, 200)
        self.assertEqual(srv.get("/app/x").status, 200)
        self.assertNotIn("cannot start a worker", srv.read_log())

    def test_unchanged_pool_keeps_its_worker_and_changed_pool_is_replaced(self):
        srv = self.make_server()
        self.write_config(srv, "A")
        srv.start()
        self.assertEqual(h2ptest.curl(srv.url("/x/y", name="extra")).status, 200)
        self.assertEqual(srv.get("/app/x").status, 200)
        before = set(srv.workers())
        self.assertEqual(len(before), 2)
        # the same config written again: nothing changes
        self.write_config(srv, "A")
        h2ptest.wait_until(lambda: srv.read_log().count("configuration reloaded") >= 1, what="reload")
        self.assertEqual(srv.get("/app/x").status, 200)
        self.assertEqual(set(srv.workers()), before)

    def test_changed_certificate_is_used_for_new_handshakes(self):
        srv = h2ptest.Server("", files={"www/index.html": "static\n"})
        self.addCleanup(srv.cleanup)
        old = h2ptest.make_cert(srv.dir, "old.test", "site")  # written as site.pem / site.key
        site = """
            sites:
              tls:
                bindings: [https://127.0.0.1:{port:https}]
                tls: {certificate: %s, key: %s}
                root: {dir}/www
            """
        srv.write("conf.d/h2pool.yaml", srv.expand(site % old))
        srv.start()
        self.assertEqual(served_cn(srv.port("https")), "old.test")
        kept = socket.create_connection(("127.0.0.1", srv.port("https")))  # an open connection survives the change
        self.addCleanup(kept.close)
        new = h2ptest.make_cert(srv.dir, "new.test", "site2")
        count = srv.read_log().count("configuration reloaded")
        srv.write("conf.d/h2pool.yaml", srv.expand(site % new))
        h2ptest.wait_until(lambda: srv.read_log().count("configuration reloaded") > count, what="the reload")
        self.assertEqual(served_cn(srv.port("https")), "new.test")
        r = h2ptest.curl(srv.url("/index.html", name="https", scheme="https"), "-k")
        self.assertEqual((r.status, r.body), (200, b"static\n"))

    def test_worker_ready_after_its_pool_drains_is_stopped(self):
        """A reload that replaces a pool while its min_processes workers are still starting: once
        ready they have nothing to serve, and stop (they stayed idle for ever, and kept the
        drained pool alive, when min_processes held them above idle_timeout)."""
        srv = h2ptest.Server("server: {threads: 2}\n", files={
            "www/index.html": "static\n",
            "slow_start.sh": "#!/bin/sh\nsleep 1\nexec \"$0\".real \"$@\"\n"})
        self.addCleanup(srv.cleanup)
        wrapper = srv.path("slow_start.sh")
        os.chmod(wrapper, 0o755)
        os.symlink(srv.expand("{apps}/hello_fcgi"), wrapper + ".real")

        def write(processes):
            text = srv.expand(SITE_MAIN) + srv.expand(f"""
pools:
  app:
    command: [{wrapper}]
    max_processes: {processes}
    min_processes: 1
    {{worker_user}}
""")
            tmp = srv.path("conf.d/.sites.yaml.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, srv.path("conf.d/sites.yaml"))

        write(2)
        srv.start()
        h2ptest.wait_until(lambda: len(srv.workers()) == 1, what="the first pool's worker to be spawned")
        first = srv.workers()[0]
        write(3)  # a changed pool: the first one drains while its worker still starts
        srv.proc.send_signal(signal.SIGHUP)
        h2ptest.wait_until(lambda: "configuration reloaded" in srv.read_log(), what="the reload")
        h2ptest.wait_until(lambda: not h2ptest.process_alive(first), timeout=20, what="the drained pool's worker to stop")
        self.assertEqual(srv.get("/app/x").status, 200)

    @unittest.skipIf(h2ptest.sanitized(), "ASan's quarantine keeps freed memory: RSS says nothing there")
    def test_rss_and_fds_stay_flat_over_1000_reloads(self):
        srv = self.make_server()
        self.write_config(srv, "A")
        srv.start()
        pid = srv.proc.pid

        def reload_n(n):
            for i in range(n):
                count = srv.read_log().count("configuration reloaded")
                srv.proc.send_signal(signal.SIGHUP)
                h2ptest.wait_until(lambda: srv.read_log().count("configuration reloaded") > count, what="reload")
                if i % 50 == 0:
                    self.assertEqual(srv.get("/index.html").status, 200)

        def rss():
            with open(f"/proc/{pid}/status") as f:
                return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

        reload_n(100)  # warm up: allocator arenas, caches
        rss0, fds0 = rss(), len(os.listdir(f"/proc/{pid}/fd"))
        reload_n(1000)
        rss1, fds1 = rss(), len(os.listdir(f"/proc/{pid}/fd"))
        self.assertLessEqual(fds1, fds0 + 2)
        self.assertLess(rss1 - rss0, 4096, f"RSS grew from {rss0} to {rss1} KiB over 1000 reloads")


if __name__ == "__main__":
    h2ptest.main()
