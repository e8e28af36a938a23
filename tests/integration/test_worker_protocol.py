"""What a worker may and may not do to the front end and to other clients: bytes written out of
turn (after its response ended) never reach another request, many distinct request_timeout
values do not stall a front-end thread, and a worker's own Server/Date headers do not duplicate
h2pool's.

Real h2pool, the libfcgi test apps and tests/apps/stray_fcgi.c (which speaks FastCGI by hand).
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
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


if __name__ == "__main__":
    h2ptest.main()
