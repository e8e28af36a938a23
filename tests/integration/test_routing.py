"""Routing: bindings (scheme://ip:port[:hostname]), Host matching, applications by longest
prefix, and the server.limits that the front end enforces (max_request_body, header_timeout,
max_connections)."""
import re
import socket
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request, raw_status, wait_until

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


SITES = """
server:
  threads: 2
  limits:
    max_request_body: 1KB
sites:
  a:
    bindings: [http://127.0.0.1:{port:http}:a.test]
    root: {dir}/a
  b:
    bindings: [http://127.0.0.1:{port:http}:b.test]
    root: {dir}/b
    applications:
      /shop: {root: {dir}/shop}
      /shop/deep: {root: {dir}/deep}
  rest:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/rest
  named_only:
    bindings: [http://127.0.0.1:{port:strict}:n.test]
    root: {dir}/n
  wild:
    bindings: ["http://*:{port:wild}"]
    root: {dir}/wild
  wild_named:
    bindings: ["http://*:{port:mixed}:w.test"]
    root: {dir}/wild_named
  wild_rest:
    bindings: ["http://*:{port:mixed}"]
    root: {dir}/wild_rest
  exact_rest:
    bindings: [http://127.0.0.1:{port:mixed}]
    root: {dir}/exact_rest
"""

FILES = {
    "a/index.html": "site a\n",
    "b/index.html": "site b\n",
    "b/shopping/index.html": "b: not the shop application\n",
    "b/shop/index.html": "b root's own /shop directory (hidden by the application)\n",
    "b/shop/item.txt": "wrong root\n",
    "shop/index.html": "shop application\n",
    "shop/item.txt": "shop item\n",
    "shop/deep/item.txt": "shop root's deep/ (hidden by /shop/deep)\n",
    "deep/item.txt": "deep application item\n",
    "rest/index.html": "catch-all\n",
    "n/index.html": "named only\n",
    "wild/index.html": "wildcard site\n",
    "wild_named/index.html": "w.test on *\n",
    "wild_rest/index.html": "* without hostname\n",
    "exact_rest/index.html": "127.0.0.1 without hostname\n",
}


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(SITES, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    unittest.addModuleCleanup(stop_cleanly, SERVER)
    SERVER.start()


class HostRoutingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SERVER

    def get(self, path="/", *args, name="http", host=None):
        extra = ["-H", f"Host: {host}"] if host is not None else []
        return curl(self.server.url(path, name), *extra, *args)

    def body(self, *args, **kw):
        r = self.get(*args, **kw)
        self.assertEqual(r.status, 200, r)
        return r.body

    def test_sites_told_apart_by_host(self):
        self.assertEqual(self.body(host="a.test"), b"site a\n")
        self.assertEqual(self.body(host="b.test"), b"site b\n")
        port = self.server.port()
        r = curl(f"http://b.test:{port}/", "--resolve", f"b.test:{port}:127.0.0.1")
        self.assertEqual((r.status, r.body), (200, b"site b\n"))

    def test_host_with_port_trailing_dot_and_upper_case(self):
        port = self.server.port()
        for host in (f"a.test:{port}", "A.TEST", "a.test.", f"A.Test.:{port}", "a.test:1"):
            with self.subTest(host=host):
                self.assertEqual(self.body(host=host), b"site a\n")

    def test_host_over_http2(self):
        r = self.get("/", "--http2-prior-knowledge", host="b.test")
        self.assertEqual((r.status, r.version, r.body), (200, "2", b"site b\n"))
        r = self.get("/", "--http2-prior-knowledge", host="unknown.test")
        self.assertEqual((r.status, r.body), (200, b"catch-all\n"))

    def test_binding_without_hostname_catches_the_rest(self):
        for host in ("c.test", "127.0.0.1", f"127.0.0.1:{self.server.port()}", "a.test.example", "[::1]"):
            with self.subTest(host=host):
                self.assertEqual(self.body(host=host), b"catch-all\n")
        # HTTP/1.0 without Host
        out = raw_request(self.server.port(), b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200") or out.startswith(b"HTTP/1.0 200"), out)
        self.assertTrue(out.endswith(b"catch-all\n"), out)

    def test_unknown_host_without_catch_all_is_400(self):
        self.assertEqual(self.body(name="strict", host="n.test"), b"named only\n")
        for host in ("a.test", "other.test", "127.0.0.1"):
            with self.subTest(host=host):
                r = self.get(name="strict", host=host)
                self.assertEqual(r.status, 400, r)
                self.assertNotIn(b"named only", r.body)
        out = raw_request(self.server.port("strict"), b"GET / HTTP/1.0\r\n\r\n")
        self.assertRegex(out, rb"^HTTP/1\.[01] 400 ")

    def test_malformed_host_is_400(self):
        for host in (b"a.test:80x", b"[::1", b"a" * 300):
            with self.subTest(host=host[:20]):
                status = raw_status(self.server.port(), b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
                self.assertEqual(status, 400)

    def test_wildcard_binding_on_another_port(self):
        # `*` listens on every address: 127.0.0.1, another loopback address and ::1
        self.assertEqual(self.body(name="wild", host="anything.test"), b"wildcard site\n")
        port = self.server.port("wild")
        for url in (f"http://127.0.0.2:{port}/", f"http://[::1]:{port}/"):
            with self.subTest(url=url):
                r = curl(url)
                self.assertEqual((r.status, r.body), (200, b"wildcard site\n"))
        # the specific-address port is not open on the other addresses
        r = curl(f"http://127.0.0.2:{self.server.port()}/")
        self.assertEqual(r.status, 0, r)

    def test_exact_address_binding_beats_wildcard_on_the_same_port(self):
        port = self.server.port("mixed")
        # on 127.0.0.1 the exact-address catch-all wins over the `*` catch-all ...
        self.assertEqual(self.body(name="mixed", host="x.test"), b"127.0.0.1 without hostname\n")
        # ... but a `*` binding with a hostname still matches its Host there
        self.assertEqual(self.body(name="mixed", host="w.test"), b"w.test on *\n")
        # on any other address only the `*` bindings apply
        for base in (f"http://127.0.0.2:{port}", f"http://[::1]:{port}"):
            with self.subTest(base=base):
                r = curl(base + "/", "-H", "Host: x.test")
                self.assertEqual((r.status, r.body), (200, b"* without hostname\n"))
                r = curl(base + "/", "-H", "Host: w.test")
                self.assertEqual((r.status, r.body), (200, b"w.test on *\n"))


class ApplicationsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SERVER

    def get(self, path, *args, **kw):
        return curl(self.server.url(path), "-H", "Host: b.test", *args, **kw)

    def test_application_serves_from_its_own_root(self):
        r = self.get("/shop/item.txt")
        self.assertEqual((r.status, r.body), (200, b"shop item\n"))
        r = self.get("/shop/")
        self.assertEqual((r.status, r.body), (200, b"shop application\n"))

    def test_longest_prefix_wins(self):
        r = self.get("/shop/deep/item.txt")
        self.assertEqual((r.status, r.body), (200, b"deep application item\n"))

    def test_prefix_matches_whole_segments_only(self):
        r = self.get("/shopping/")
        self.assertEqual((r.status, r.body), (200, b"b: not the shop application\n"))
        r = self.get("/")
        self.assertEqual((r.status, r.body), (200, b"site b\n"))

    def test_application_path_without_slash_redirects(self):
        r = self.get("/shop")
        self.assertEqual(r.status, 301, r)
        self.assertTrue(r.header("location").endswith("/shop/"), r.header("location"))

    def test_dot_segments_cannot_leave_the_application(self):
        # /shop/../index.html would resolve to the root application's file, never to one in shop's
        # parent; request filtering (on by default) refuses `..` segments before that: 404.5
        r = self.get("/shop/../index.html", "--path-as-is")
        self.assertEqual(r.status, 404)
        self.assertNotEqual(r.body, b"site b\n")

    def test_request_body_over_max_request_body_is_413(self):
        r = self.get("/index.html", "--data-binary", "@-", data=b"x" * 2048)
        self.assertEqual(r.status, 413, r)
        r = self.get("/index.html", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked", data=b"x" * 2048)
        self.assertEqual(r.status, 413, r)
        # under the limit, the static handler answers (405: it takes no POST)
        r = self.get("/index.html", "--data-binary", "@-", data=b"x" * 900)
        self.assertEqual(r.status, 405, r)

    def test_413_before_the_body_is_sent(self):
        out = raw_request(self.server.port(),
                          b"POST /index.html HTTP/1.1\r\nHost: b.test\r\nContent-Length: 1000000\r\n\r\n", timeout=10)
        self.assertRegex(out, rb"^HTTP/1\.1 413 ")


class SlowlorisTest(unittest.TestCase):
    CONF = """
    server:
      threads: 1
      limits:
        header_timeout: 1s
    sites:
      s:
        bindings: [http://127.0.0.1:{port:http}]
        root: {dir}/www
    """

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONF, {"www/index.html": "ok\n"})
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        cls.server.start()

    def test_trickled_header_is_cut_off(self):
        received = b""
        closed = False
        with socket.create_connection(("127.0.0.1", self.server.port()), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            s.settimeout(0.3)
            for i in range(20):  # 20 * 0.3 s is far past header_timeout: 1s
                try:
                    s.sendall(b"X-Slow: " if i == 0 else b"a")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue  # nothing yet: the server is still waiting for the header
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                received += chunk
        self.assertTrue(closed, "a trickled request head outlived header_timeout")
        self.assertNotIn(b"200 OK", received)
        self.assertNotIn(b"ok\n", received)

    def test_prompt_request_is_served(self):
        r = curl(self.server.url("/"))
        self.assertEqual((r.status, r.body), (200, b"ok\n"))


class MaxConnectionsTest(unittest.TestCase):
    CONF = """
    server:
      threads: 2
      limits:
        max_connections: 2
    sites:
      s:
        bindings: [http://127.0.0.1:{port:http}]
        root: {dir}/www
    """

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONF, {"www/index.html": "ok\n"})
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        cls.server.start()

    def open_and_request(self):
        """A keep-alive connection that has been served once (so the server holds it)."""
        s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"ok\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return s, data

    def open_two(self):
        """Two served keep-alive connections.  The harness's readiness check (a connection made
        and closed at start) counts until the server has seen it close, which under a sanitizer
        can take a moment: meanwhile the second connection is refused, and is tried again."""
        def two():
            first, data1 = self.open_and_request()
            try:
                second, data2 = self.open_and_request()
            except ConnectionResetError:
                second, data2 = None, b""
            if data2.startswith(b"HTTP/1.1 200"):
                return first, data1, second, data2
            first.close()
            if second is not None:
                second.close()
            return None
        return wait_until(two, interval=0.1, what="two connections served at once")

    def test_third_connection_is_closed(self):
        first, data1, second, data2 = self.open_two()
        try:
            self.assertTrue(data1.startswith(b"HTTP/1.1 200"), data1)
            self.assertTrue(data2.startswith(b"HTTP/1.1 200"), data2)
            try:
                third = raw_request(self.server.port(), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            except ConnectionResetError:
                third = b""
            self.assertEqual(third, b"", "a third connection was served with max_connections: 2")
        finally:
            first.close()
        # one slot is free again once the server has seen the close
        def served():
            try:
                return raw_status(self.server.port(), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 200
            except ConnectionResetError:
                return False
        wait_until(served, what="a connection slot after closing one")
        second.close()


class DoubledSlashTest(unittest.TestCase):
    """A doubled slash must not walk around a location's settings (its modules)."""

    def test_location_applies_whatever_the_slashes(self):
        srv = h2ptest.Server("""
            sites:
              s:
                bindings: [http://127.0.0.1:{port:http}]
                root: {dir}/www
                locations:
                  /private: {modules: {custom_headers: {X-Scope: private}}}
            """, files={"www/private/p.txt": "p\n"})
        with srv:
            for path in ["/private/p.txt", "//private/p.txt", "/private//p.txt", "///private///p.txt"]:
                for proto in ([], ["--http2-prior-knowledge"]):
                    r = srv.get(path, "--path-as-is", *proto)
                    self.assertEqual((r.status, r.header("x-scope")), (200, "private"), (path, proto))


if __name__ == "__main__":
    h2ptest.main()
