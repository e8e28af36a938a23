"""Listening sockets: h2pool never shares a port with another process.

With SO_REUSEPORT, any process of the same user that sets it too can bind h2pool's address and
silently take a share of its connections (or h2pool a share of the other's).  h2pool binds one
socket per address without SO_REUSEPORT and its threads share it, so a held port is an error at
start and at reload, naming the address, and nobody can join a port h2pool listens on.
"""
import errno
import os
import re
import signal
import socket
import time
import threading
import unittest

import h2ptest
from h2ptest import Server, curl, wait_until


def hold(port, address="127.0.0.1", reuseport=True, reuseaddr=False, v6only=None):
    """A listening socket of this (other) process on address:port; the caller closes it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if reuseaddr:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    try:
        s.bind((address, port))
        s.listen(16)
    except OSError:
        s.close()
        raise
    return s


# the ways another process can hold a port: (address it binds, SO_REUSEPORT, SO_REUSEADDR, IPV6_V6ONLY)
HOLDERS = [
    ("127.0.0.1", True, False, None),
    ("127.0.0.1", True, True, None),
    ("127.0.0.1", False, False, None),
    ("127.0.0.1", False, True, None),
    ("0.0.0.0", True, False, None),
    ("::", True, False, 0),  # dual-stack: includes 127.0.0.1
]

SITE = """
server: {threads: %d}
sites:
  s:
    bindings: [%s]
    root: {dir}/www
"""


def listening_sockets(port):
    """Listening TCP sockets on `port` in this network namespace (from /proc/net/tcp and tcp6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    count += 1
    return count


def server(threads, bindings, body="h2pool\n", expect_start=True):
    srv = Server(SITE % (threads, ", ".join(bindings)), files={"www/index.html": body}, expect_start=expect_start)
    return srv


class PortHeldAtStartTest(unittest.TestCase):
    def start_against(self, binding_fmt, holder):
        address, reuseport, reuseaddr, v6only = holder
        srv = server(2, [binding_fmt], expect_start=False)
        self.addCleanup(srv.cleanup)
        port = srv.port()
        held = hold(port, address, reuseport, reuseaddr, v6only)
        self.addCleanup(held.close)
        srv.start()
        code = srv.proc.wait(timeout=30)
        return srv, port, code, held

    def test_held_port_fails_the_start_naming_the_address(self):
        for holder in HOLDERS:
            with self.subTest(holder=holder):
                srv, port, code, held = self.start_against("http://127.0.0.1:{port:http}", holder)
                log = srv.read_log()
                self.assertNotEqual(code, 0, log)
                self.assertIn(f"bind() to 127.0.0.1:{port} failed (98: Address already in use)", log)
                self.assertIn(f"cannot listen on http://127.0.0.1:{port}", log)
                # the holder still gets every connection: nothing was shared
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    held.settimeout(5)
                    held.accept()[0].close()

    def test_held_address_inside_a_wildcard_binding_fails_the_start(self):
        for holder in [("127.0.0.1", True, False, None), ("127.0.0.1", True, True, None), ("::1", True, False, None)]:
            with self.subTest(holder=holder):
                srv, port, code, _ = self.start_against('"http://*:{port:http}"', holder)
                log = srv.read_log()
                self.assertNotEqual(code, 0, log)
                self.assertIn(f"bind() to [::]:{port} failed (98: Address already in use)", log)

    def test_second_h2pool_on_the_same_port_fails_to_start(self):
        first = server(2, ["http://127.0.0.1:{port:http}"], body="first\n")
        self.addCleanup(first.cleanup)
        first.start()
        port = first.port()
        second = server(2, [f"http://127.0.0.1:{port}"], body="second\n", expect_start=False)
        self.addCleanup(second.cleanup)
        second.start()
        code = second.proc.wait(timeout=30)
        log = second.read_log()
        self.assertNotEqual(code, 0, log)
        self.assertIn(f"bind() to 127.0.0.1:{port} failed (98: Address already in use)", log)
        for _ in range(20):  # new connections each: all of them reach the first one
            r = curl(first.url("/"), "-H", "Connection: close")
            self.assertEqual((r.status, r.body), (200, b"first\n"))
        h2ptest.stop_cleanly(first)


class NobodyJoinsTest(unittest.TestCase):
    def test_another_process_cannot_bind_after_h2pool(self):
        srv = server(2, ["http://127.0.0.1:{port:http}", '"http://*:{port:wild}"'])
        self.addCleanup(srv.cleanup)
        srv.start()
        exact, wild = srv.port(), srv.port("wild")
        attempts = [(exact, "127.0.0.1", True, False, None), (exact, "127.0.0.1", True, True, None),
                    (exact, "0.0.0.0", True, False, None), (exact, "::", True, False, 0),
                    (wild, "127.0.0.1", True, False, None), (wild, "127.0.0.1", True, True, None),
                    (wild, "::1", True, False, None), (wild, "::", True, True, 0), (wild, "0.0.0.0", True, True, None)]
        for port, address, reuseport, reuseaddr, v6only in attempts:
            with self.subTest(port=port, address=address, reuseport=reuseport, reuseaddr=reuseaddr):
                with self.assertRaises(OSError) as caught:
                    hold(port, address, reuseport, reuseaddr, v6only).close()
                self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertEqual(srv.get("/").status, 200)
        h2ptest.stop_cleanly(srv)


class ThreadsShareOneSocketTest(unittest.TestCase):
    def test_every_thread_serves_on_one_socket(self):
        threads = 4
        srv = server(threads, ["http://127.0.0.1:{port:http}"])
        self.addCleanup(srv.cleanup)
        srv.start()
        port = srv.port()
        self.assertEqual(listening_sockets(port), 1)
        # the threads hold one descriptor each of that one socket
        inodes = [os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{srv.proc.pid}/fd")]
        listener = {i for i in inodes if i.startswith("socket:")}
        self.assertIn(threads, [inodes.count(i) for i in listener])

        # keep-alive connections opened in bursts from several clients stay open: see which loops hold them
        conns, lock, failures = [], threading.Lock(), []

        def client():
            for _ in range(16):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"h2pool\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if not data.startswith(b"HTTP/1.1 200"):
                    failures.append(data)
                with lock:
                    conns.append(s)

        workers = [threading.Thread(target=client) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.addCleanup(lambda: [c.close() for c in conns])
        self.assertEqual(failures, [])
        self.assertEqual(len(conns), 128)
        self.assertGreaterEqual(len(loops_holding_connections(srv.proc.pid, port)), 2)
        h2ptest.stop_cleanly(srv)


def loops_holding_connections(pid, port):
    """The epoll descriptors of `pid` that watch an accepted connection on `port`."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    established.add(fields[9])
    connection_fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m and m.group(1) in established:
            connection_fds.add(int(fd))
    loops = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                watched = {int(m.group(1)) for m in re.finditer(r"^tfd:\s*(\d+)", f.read(), re.M)}
        except OSError:
            continue
        if watched & connection_fds:
            loops.append(fd)
    return loops


class ReloadTest(unittest.TestCase):
    def write(self, srv, bindings, until, what):
        """Writes the config (inotify and SIGHUP both reload it) and waits until `until()`."""
        srv.write("conf.d/h2pool.yaml", srv.expand(SITE % (2, ", ".join(bindings))))
        srv.proc.send_signal(signal.SIGHUP)
        wait_until(until, what=what)

    def test_adding_a_held_port_is_refused_and_the_old_config_keeps_serving(self):
        srv = server(2, ["http://127.0.0.1:{port:http}"])
        self.addCleanup(srv.cleanup)
        srv.start()
        for holder in HOLDERS:
            with self.subTest(holder=holder):
                other = h2ptest.free_port()
                address, reuseport, reuseaddr, v6only = holder
                held = hold(other, address, reuseport, reuseaddr, v6only)
                try:
                    refusal = f"refused: cannot listen on http://127.0.0.1:{other}: bind() to 127.0.0.1:{other} failed (98: Address already in use)"
                    self.write(srv, ["http://127.0.0.1:{port:http}", f"http://127.0.0.1:{other}"],
                               lambda: refusal in srv.read_log(), "the refusal in the log")
                    self.assertEqual(srv.get("/").status, 200)
                    with socket.create_connection(("127.0.0.1", other), timeout=5):
                        held.settimeout(5)
                        held.accept()[0].close()
                    self.assertNotIn("configuration reloaded", srv.read_log())
                    # the change was read by the refused reload: once the port is free nothing
                    # applies it behind the user's back (the inotify event's debounced reload did)
                    held.close()
                    time.sleep(0.6)  # three debounce periods: a reload that must not come
                    self.assertNotIn("configuration reloaded", srv.read_log())
                finally:
                    held.close()
        # once it is free, the same reload goes through
        self.write(srv, ["http://127.0.0.1:{port:http}", "http://127.0.0.1:{port:extra}"],
                   lambda: curl(srv.url("/", name="extra")).status == 200, "the new binding to serve")
        h2ptest.stop_cleanly(srv)

    def test_bindings_under_a_wildcard_come_and_go(self):
        wild = """
            server: {threads: 2}
            sites:
              wild:
                bindings: ["http://*:{port:http}"]
                root: {dir}/wild
            """
        srv = Server(wild, files={"wild/index.html": "wild\n", "exact/index.html": "exact\n"})
        self.addCleanup(srv.cleanup)
        srv.start()
        port = srv.port()
        srv.write("conf.d/h2pool.yaml", srv.expand(wild + """
              exact:
                bindings: ["http://127.0.0.1:{port:http}"]
                root: {dir}/exact
            """))
        srv.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: curl(f"http://127.0.0.1:{port}/").body == b"exact\n", what="the exact-address site")
        self.assertEqual(curl(f"http://127.0.0.2:{port}/").body, b"wild\n")
        self.assertEqual(curl(f"http://[::1]:{port}/").body, b"wild\n")
        self.assertEqual(listening_sockets(port), 1)
        srv.write("conf.d/h2pool.yaml", srv.expand(wild))
        srv.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: curl(f"http://127.0.0.1:{port}/").body == b"wild\n", what="the exact-address site to go")
        self.assertEqual(listening_sockets(port), 1)
        self.assertNotIn("refused", srv.read_log())
        h2ptest.stop_cleanly(srv)

    def test_moving_an_address_to_another_socket_is_refused(self):
        srv = server(2, ["http://127.0.0.1:{port:http}"])
        self.addCleanup(srv.cleanup)
        srv.start()
        # a wildcard over an address that has its own socket, and a wildcard replacing it at once
        for bindings, words in [(["http://127.0.0.1:{port:http}", '"http://*:{port:http}"'], "needs a restart"),
                                (['"http://*:{port:http}"'], "remove it in one reload")]:
            with self.subTest(bindings=bindings):
                self.write(srv, bindings, lambda: words in srv.read_log(), "the refusal")
                self.assertEqual(srv.get("/").status, 200)
        self.assertNotIn("configuration reloaded", srv.read_log())
        h2ptest.stop_cleanly(srv)


if __name__ == "__main__":
    h2ptest.main()
