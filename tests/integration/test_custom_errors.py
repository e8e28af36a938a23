"""custom_errors module (`modules.custom_errors`): error pages per status, and which
clients see detailed error bodies (mode off / on / detailed_local_only)."""
import re
import shutil
import socket
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request

SANITIZER_REPORT = re.compile(r"ERROR: \w+Sanitizer|runtime error:")


stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)

PAGE_404 = "<!doctype html><title>Not here</title><h1>Custom 404 page</h1>\n"
PAGE_500 = "Custom 500 text\n"

CONF = """
server:
  threads: 2
pools:
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 1
    {worker_user}
  crash:
    command: ["{apps}/crash_fcgi"]
    max_processes: 1
    {worker_user}
sites:
  on:
    bindings: ["http://127.0.0.1:{port:http}:on.test"]
    root: {dir}/www
    http2: true
    handlers:
      - {path: "*.php", pool: php}
      - {path: "/crash/*", pool: crash}
    modules:
      custom_errors:
        mode: "on"
        pages: {404: ../errors/404.html, 500: ../errors/500.txt}
      custom_headers: {X-Frame-Options: DENY}
    locations:
      /private:
        modules:
          authentication:
            anonymous: false
            basic: {realm: private, users_file: ../users.htpasswd}
  off:
    bindings: ["http://127.0.0.1:{port:http}:off.test"]
    root: {dir}/www
    http2: true
    handlers:
      - {path: "/crash/*", pool: crash}
    modules:
      custom_errors:
        mode: "off"
        pages: {404: ../errors/404.html}
  local:
    bindings: ["http://127.0.0.1:{port:http}:local.test"]
    root: {dir}/www
    http2: true
    modules:
      custom_errors:
        pages: {404: ../errors/404.html}
  default:
    bindings: ["http://127.0.0.1:{port:http}:default.test"]
    root: {dir}/www
"""

FILES = {
    "www/hello.txt": "hello\n",
    "www/nodefault/file.txt": "x\n",
    "www/private/p.txt": "private\n",
    "www/app404.php": "<?php http_response_code(404); header('Content-Type: application/json'); echo '{\"error\": \"no such item\"}';\n",
    "www/empty404.php": "<?php http_response_code(404);\n",
    "www/empty500.php": "<?php http_response_code(500);\n",
    "www/empty403.php": "<?php http_response_code(403);\n",
    "errors/404.html": PAGE_404,
    "errors/500.txt": PAGE_500,
    "users.htpasswd": "alice:$6$abcdefgh$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/\n",
}

H2 = "--http2-prior-knowledge"


class CustomErrorsTest(h2ptest.ServerTestCase):
    CONF, FILES, HOST = CONF, FILES, "on.test"

    def need_php(self):
        if shutil.which("php-cgi") is None:
            self.skipTest("php-cgi not available")

    # ---- mode: on -------------------------------------------------------------------------

    def test_page_for_404(self):
        for proto in [[], [H2]]:
            with self.subTest(proto=proto):
                r = self.get("/missing.txt", *proto)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.text, PAGE_404)
                self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
                self.assertEqual(r.header("content-length"), str(len(PAGE_404.encode())))
                self.assertEqual(r.header("x-frame-options"), "DENY")  # custom_headers still apply

    def test_page_for_404_head(self):
        out = raw_request(self.server.port(), b"HEAD /missing.txt HTTP/1.1\r\nHost: on.test\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)
        self.assertIn(f"content-length: {len(PAGE_404)}".encode(), head.lower())
        self.assertEqual(body, b"")

    def test_generic_body_hides_detail(self):
        # 403 "directory listing denied" from the static handler, 405 from libh2o's file handler
        r = self.get("/nodefault/")
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.text, "403 Forbidden\n")
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        r = self.get("/hello.txt", "-X", "POST", "--data-binary", "x", H2)
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.text, "405 Method Not Allowed\n")
        self.assertIn("GET", r.header("allow") or "")  # headers are kept

    def test_401_keeps_its_challenge(self):
        r = self.get("/private/p.txt")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.text, "401 Unauthorized\n")
        self.assertEqual(r.header("www-authenticate"), 'Basic realm="private"')

    def test_worker_crash_502_is_generic(self):
        r = self.get("/crash/x?crash-before")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.text, "502 Bad Gateway\n")
        r = self.get("/crash/x?crash-before", host="off.test")
        self.assertEqual(r.status, 502, r)
        self.assertNotEqual(r.text, "502 Bad Gateway\n")  # the detailed body

    def test_application_error_body_passes_through(self):
        self.need_php()
        for proto in [[], [H2]]:
            with self.subTest(proto=proto):
                r = self.get("/app404.php", *proto)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.body, b'{"error": "no such item"}')
                self.assertEqual(r.header("content-type"), "application/json")

    def test_empty_application_error_body_gets_the_page(self):
        self.need_php()
        for proto in [[], [H2]]:
            with self.subTest(proto=proto):
                r = self.get("/empty404.php", *proto)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.text, PAGE_404)
                self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
                r = self.get("/empty500.php", *proto)
                self.assertEqual(r.status, 500, r)
                self.assertEqual(r.text, PAGE_500)
                self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
                r = self.get("/empty403.php", *proto)
                self.assertEqual(r.status, 403, r)
                self.assertEqual(r.text, "403 Forbidden\n")

    def test_head_to_application_error_passes_through(self):
        self.need_php()
        # the worker's answer to HEAD says nothing about its body: it is passed on as it is
        out = raw_request(self.server.port(), b"HEAD /empty404.php HTTP/1.1\r\nHost: on.test\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)
        self.assertNotIn(f"content-length: {len(PAGE_404)}".encode(), head.lower())
        self.assertEqual(body, b"")

    def test_success_untouched(self):
        r = self.get("/hello.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello\n")

    # ---- mode: off ------------------------------------------------------------------------

    def test_mode_off_shows_detail_and_ignores_pages(self):
        for proto in [[], [H2]]:
            with self.subTest(proto=proto):
                r = self.get("/missing.txt", *proto, host="off.test")
                self.assertEqual(r.status, 404, r)
                self.assertNotEqual(r.text, PAGE_404)
                self.assertEqual(r.text, "not found")
                r = self.get("/nodefault/", *proto, host="off.test")
                self.assertEqual(r.status, 403, r)
                self.assertIn("directory listing denied", r.text)

    # ---- mode: detailed_local_only (the default), from loopback -------------------------------

    def test_local_client_sees_detail(self):
        for host in ["local.test", "default.test"]:
            with self.subTest(host=host):
                r = self.get("/missing.txt", host=host)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.text, "not found")
                r = self.get("/nodefault/", H2, host=host)
                self.assertEqual(r.status, 403, r)
                self.assertIn("directory listing denied", r.text)


def non_loopback_address():
    """An address of this host that is not loopback (the kernel routes to it locally), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    if addr.startswith("127.") or addr == "0.0.0.0":
        return None
    try:
        with socket.socket() as t:
            t.bind((addr, 0))
    except OSError:
        return None
    return addr


class RemoteClientTest(unittest.TestCase):
    """detailed_local_only with a client that is not on loopback: this host's own non-loopback
    address, when it has one (the peer address is then that address, not 127.0.0.1)."""

    def test_remote_client_gets_custom_bodies(self):
        addr = non_loopback_address()
        if addr is None:
            self.skipTest("no non-loopback IPv4 address on this host")
        conf = f"""
        sites:
          remote:
            bindings: ["http://{addr}:{{port:http}}"]
            root: {{dir}}/www
            http2: true
            modules:
              custom_errors:
                pages: {{404: ../errors/404.html}}
        """
        server = Server(conf, {"www/hello.txt": "hello\n", "www/nodefault/f.txt": "x\n", "errors/404.html": PAGE_404})
        self.addCleanup(server.cleanup)
        self.addCleanup(stop_cleanly, server)
        # Server.start() probes 127.0.0.1; this one listens on addr only
        server.expect_start = False
        server.start()
        port = server.port()

        def listening():
            if server.proc.poll() is not None:
                raise AssertionError("h2pool exited:\n" + server.read_log())
            try:
                socket.create_connection((addr, port), timeout=1).close()
                return True
            except OSError:
                return False
        h2ptest.wait_until(listening, what="h2pool to listen on " + addr)

        for proto in [[], [H2]]:
            with self.subTest(proto=proto):
                r = curl(f"http://{addr}:{port}/missing.txt", *proto)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.text, PAGE_404)
                r = curl(f"http://{addr}:{port}/nodefault/", *proto)
                self.assertEqual(r.status, 403, r)
                self.assertEqual(r.text, "403 Forbidden\n")
                r = curl(f"http://{addr}:{port}/hello.txt", *proto)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"hello\n")


class CustomErrorsConfigTest(unittest.TestCase):
    def test_page_too_large_is_refused(self):
        conf = """
        sites:
          s:
            bindings: ["http://127.0.0.1:{port:http}"]
            root: {dir}/www
            modules:
              custom_errors: {mode: "on", pages: {404: ../errors/big.html}}
        """
        server = Server(conf, {"www/hello.txt": "hello\n", "errors/big.html": "x" * (2 * 1024 * 1024)}, expect_start=False)
        self.addCleanup(server.cleanup)
        server.start()
        self.assertNotEqual(server.proc.wait(30), 0)
        log = server.read_log()
        self.assertIn("custom_errors.pages.404", log)
        self.assertIn("larger than 1 MiB", log)
        self.assertIsNone(SANITIZER_REPORT.search(log), log)


if __name__ == "__main__":
    h2ptest.main()
