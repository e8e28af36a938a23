"""How long a client may take to send a request: the head, the body, and an idle kept connection.

libh2o 2.2.5 runs one timer over the head and the body; h2pool times them apart
(frontend/conn_watch.c), so an upload on a slow link completes while a trickled head is cut
off, and every connection dropped for time says why in the error log.
"""
import hashlib
import os
import re
import signal
import socket
import ssl
import time
import unittest

from h2ptest import Server, ServerTestCase, curl, log_shows, main, make_cert, stop_cleanly, wait_until

CONF = """
server:
  threads: 1
  limits:
    header_timeout: {header}
    body_timeout: 2s
    keepalive_timeout: 4s
pools:
  echo: {command: ["{apps}/echo_fcgi"], max_processes: 1, {worker_user}}
  slow: {command: ["{apps}/slow_fcgi"], max_processes: 1, {worker_user}}
  php: {command: [php-cgi], max_processes: 1, {worker_user}}
sites:
  s:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    handlers:
      - {path: "/echo/*", pool: echo}
      - {path: "/slow/*", pool: slow}
      - {path: "*.php", pool: php}
"""

# the whole answer (its Content-Length), then work after it, as MediaWiki's deferred updates do
AFTER_PHP = """<?php
header('Content-Length: 6');
echo "whole\\n";
flush();
usleep(1500000);
"""


def read_response(s, timeout=15):
    """Reads one response with a Content-Length (or to EOF); returns (head, body) bytes."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    while m and len(body) < int(m.group(1)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def read_to_eof(s, timeout=15):
    """Reads a response to EOF (Connection: close); returns (head, body) with chunks decoded."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if re.search(rb"(?i)transfer-encoding: *chunked", head):
        decoded = b""
        while True:
            size_line, body = body.split(b"\r\n", 1)
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, body = decoded + body[:size], body[size + 2:]
        body = decoded
    return head, body


def closed_within(s, seconds):
    """True when the server closes `s` (EOF or reset) within `seconds`, reading what it sends."""
    deadline = time.monotonic() + seconds
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


class TimeoutsTest(ServerTestCase):
    CONF, FILES = CONF.replace("{header}", "1s"), {"www/index.html": "ok\n", "www/after.php": AFTER_PHP}

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_slow_upload_completes(self):
        # 400 KB at about 100 KB/s: 4 s, four times header_timeout, never 2 s without a byte
        body = os.urandom(400 * 1024)
        s = self.connect()
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Type: application/octet-stream\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 10 * 1024):
            s.sendall(body[i:i + 10 * 1024])
            time.sleep(0.1)
        head, out = read_to_eof(s)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"BODY-LENGTH=%d\n" % len(body), out)
        self.assertEqual(hashlib.sha256(out.split(b"\nBODY=", 1)[1]).digest(), hashlib.sha256(body).digest())

    def test_slow_chunked_upload_completes(self):
        s = self.connect()
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(25):  # 2.5 s
            s.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
            time.sleep(0.1)
        s.sendall(b"0\r\n\r\n")
        head, out = read_response(s)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"BODY-LENGTH=25600\n", out)

    def test_stalled_body_is_cut_off_and_logged(self):
        s = self.connect()
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        self.assertTrue(closed_within(s, 15), "a stalled body outlived body_timeout")
        log_shows(self.server, r"closed: request body stalled: nothing received for body_timeout \(2000 ms\)")

    def test_trickled_head_is_cut_off_and_logged(self):
        s = self.connect()
        s.sendall(b"GET / HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # one header byte every 0.25 s: 10 s, far past header_timeout
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_within(s, 0.25):
                closed = True
                break
        self.assertTrue(closed, "a trickled request head outlived header_timeout")
        log_shows(self.server, r"127\.0\.0\.1:\d+ closed: request head not complete within header_timeout \(1000 ms\)")

    def test_silent_connection_is_closed_and_logged(self):
        s = self.connect()
        self.assertTrue(closed_within(s, 15))
        log_shows(self.server, r"closed: no request within header_timeout")

    def test_idle_kept_connection_lives_for_keepalive_timeout(self):
        s = self.connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        head, body = read_response(s)
        self.assertEqual(body, b"ok\n")
        time.sleep(2)  # past header_timeout (1 s), within keepalive_timeout (4 s): still open
        s.sendall(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        head, body = read_response(s)
        self.assertEqual((head[:12], body), (b"HTTP/1.1 200", b"ok\n"))
        self.assertTrue(closed_within(s, 15), "an idle kept connection outlived keepalive_timeout")

    def test_a_body_over_the_limit_is_refused_and_logged(self):
        s = self.connect()
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Length: 40000000\r\n\r\n")
        self.assertTrue(closed_within(s, 15))
        log_shows(self.server, r"closed: its request body is over limits.max_request_body \(413\)")

    def test_a_client_that_leaves_mid_request_is_logged(self):
        for request, where in ((b"GET / HTTP/1.1\r\nHost: s\r\nX-Half: ", "in the head"),
                               (b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\nhalf", "in the body")):
            with self.subTest(where=where):
                s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
                s.sendall(request)
                time.sleep(0.5)  # (the once-a-second watch may or may not see it: either way)
                s.close()
                log_shows(self.server, r"127\.0\.0\.1:\d+ closed by the client before its request was complete \(" + where)

    def test_a_client_that_leaves_at_once_is_logged(self):
        # no time for the once-a-second check to see the request: the close itself tells
        variants = (
            ("in the head", b"GET / HTTP/1.1\r\nHost: s\r\nX-Half: ", None),
            ("in the body", b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000, None),
            ("the second request", b"POST /echo/up HTTP/1.1\r\nHost: s\r\nContent-Length: 10\r\n\r\nab",
             b"GET / HTTP/1.1\r\nHost: s\r\n\r\n"),
            ("pipelined", b"GET / HTTP/1.1\r\nHost: s\r\n\r\nGET / HTTP/1.1\r\nHost: s\r\nX-Half: ", None),
        )
        for name, request, first in variants:
            where = "in the body" if name == "in the body" or b"ab" in request else "in the head"
            with self.subTest(name=name):
                s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
                port = s.getsockname()[1]
                if first is not None:
                    s.sendall(first)
                    read_response(s)
                s.sendall(request)
                s.close()
                log_shows(self.server, r"127\.0\.0\.1:%d closed by the client before its request was complete \(%s, \d+ bytes\)"
                          % (port, where))

    def test_complete_requests_and_idle_connections_are_not_taken_for_dropped_ones(self):
        quiet = []
        for request in (b"", b"GET / HTTP/1.1\r\nHost: s\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0"):
            s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
            quiet.append(s.getsockname()[1])
            s.sendall(request)
            if request.startswith(b"GET"):
                read_response(s)
            s.close()
        # then one that is logged: the lines of the others would be written before it
        s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
        port = s.getsockname()[1]
        s.sendall(b"GET / HTTP/1.1\r\n")
        s.close()
        log_shows(self.server, r"127\.0\.0\.1:%d closed by the client" % port)
        for q in quiet:
            self.assertNotRegex(self.server.read_log(), r"127\.0\.0\.1:%d closed" % q)

    def test_a_client_that_leaves_while_the_application_works_is_logged(self):
        variants = (
            ("GET", b"GET /slow/x?ms=2000 HTTP/1.1\r\nHost: s\r\n\r\n"),
            ("POST", b"POST /slow/x?ms=2000 HTTP/1.1\r\nHost: s\r\nContent-Length: 5000\r\n\r\n" + b"y" * 5000),
            ("HTTP/1.0", b"GET /slow/x?ms=2000 HTTP/1.0\r\n\r\n"),
        )
        for method, request in variants:
            with self.subTest(method=method):
                before = self.server.read_log().count("the client left before the answer (it closed its connection)")
                s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
                s.sendall(request)
                s.close()
                wait_until(lambda: self.server.read_log().count(
                    "the client left before the answer (it closed its connection)") > before,
                    what="the line for a client that left")
                # the worker finishes (its answer goes nowhere) and serves the next request
                r = curl(self.server.url("/slow/x?ms=0"))
                self.assertEqual((r.status, r.body), (200, b"slept 0 ms\n"))

    def test_an_http2_stream_reset_while_the_application_works_is_logged(self):
        for query in ("ms=3000", "ms=300&chunks=20"):  # before the answer, and in its middle
            with self.subTest(query=query):
                before = len(re.findall(r"pool slow: the client left", self.server.read_log()))
                r = curl(self.server.url("/slow/x?" + query), "--http2-prior-knowledge", timeout=1)
                self.assertNotEqual(r.status, 200 if query == "ms=3000" else -1)
                wait_until(lambda: len(re.findall(r"pool slow: the client left", self.server.read_log())) > before,
                           what="the line for a stream that was reset")
                self.assertRegex(self.server.read_log(),
                                 r"pool slow: the client left (before the end of the answer \(stream reset|in the middle of the answer)")
                r = curl(self.server.url("/slow/x?ms=0"))
                self.assertEqual((r.status, r.body), (200, b"slept 0 ms\n"))

    def test_a_client_that_has_the_whole_answer_may_leave(self):
        # curl ends an HTTP/2 transfer once it has the Content-Length and closes: no answer is lost
        for proto in ("--http2-prior-knowledge", "--http1.1"):
            with self.subTest(proto=proto):
                before = self.server.read_log().count("pool php: the client left")
                r = curl(self.server.url("/after.php"), proto)
                self.assertEqual((r.status, r.body), (200, b"whole\n"))
                r = curl(self.server.url("/after.php"))  # its one worker is done with the first: that one is over
                self.assertEqual(r.status, 200)
                # a line logged later: one for the first request would be written before it
                s = socket.create_connection(("127.0.0.1", self.server.port()), timeout=10)
                port = s.getsockname()[1]
                s.sendall(b"GET / HTTP/1.1\r\n")
                s.close()
                log_shows(self.server, r"127\.0\.0\.1:%d closed by the client" % port)
                self.assertEqual(self.server.read_log().count("pool php: the client left"), before)

    def test_a_slow_application_is_not_a_slow_client(self):
        # the request is complete: the 3 s the worker takes are not the client's
        r = curl(self.server.url("/slow/x?ms=3000"))
        self.assertEqual((r.status, r.body), (200, b"slept 3000 ms\n"))


class TlsClientLeavesTest(ServerTestCase):
    """Over TLS the watch learns from the handshake when HTTP/1 requests begin, and that h2 sends
    frames (no half-sent request)."""
    CONF = """
    pools:
      echo: {command: ["{apps}/echo_fcgi"], max_processes: 1, {worker_user}}
    sites:
      s:
        bindings: [https://127.0.0.1:{port:http}]
        tls: {certificate: "{dir}/s.test.pem", key: "{dir}/s.test.key"}
        root: {dir}/www
        handlers: [{path: "/echo/*", pool: echo}]
    """
    FILES = {"www/index.html": "ok\n"}

    @classmethod
    def prepare(cls, server):
        make_cert(server.dir, "s.test")

    def tls_connection(self, alpn, servername):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(alpn)
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.server.port()), timeout=10),
                            server_hostname=servername)
        return s, s.getsockname()[1]

    def test_a_client_that_leaves_at_once_is_logged(self):
        for where, request, servername in (
                ("in the head", b"GET / HTTP/1.1\r\nHost: s\r\nX-Half: ", "s.test"),
                ("in the body", b"POST /echo/x HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\nab", "s.test"),
                ("in the head", b"GET / HTTP/1.1\r\nHost: s\r\nX-Half: ", None)):  # no SNI: the default certificate
            with self.subTest(where=where, servername=servername):
                s, port = self.tls_connection(["http/1.1"], servername)
                s.sendall(request)
                s.close()
                log_shows(self.server, r"127\.0\.0\.1:%d closed by the client before its request was complete \(%s"
                          % (port, where))

    def test_an_h2_connection_without_a_request_is_no_dropped_request(self):
        s, quiet = self.tls_connection(["h2"], "s.test")
        self.assertEqual(s.selected_alpn_protocol(), "h2")
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        s.close()
        s, port = self.tls_connection(["http/1.1"], "s.test")
        s.sendall(b"GET / HTTP/1.1\r\n")
        s.close()
        log_shows(self.server, r"127\.0\.0\.1:%d closed by the client" % port)
        self.assertNotRegex(self.server.read_log(), r"127\.0\.0\.1:%d closed" % quiet)


class TimeoutReloadTest(unittest.TestCase):
    def test_header_timeout_changes_on_reload(self):
        server = Server(CONF.replace("{header}", "60s"), {"www/index.html": "ok\n"})
        self.addCleanup(server.cleanup)
        server.start()
        server.write("conf.d/h2pool.yaml", server.expand(CONF.replace("{header}", "1s")))
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in server.read_log(), what="the reload")
        s = socket.create_connection(("127.0.0.1", server.port()), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET / HTTP/1.1\r\n")
        self.assertTrue(closed_within(s, 20), "the reloaded header_timeout (1 s) was not applied")
        log_shows(server, r"request head not complete within header_timeout \(1000 ms\)")
        stop_cleanly(server)


if __name__ == "__main__":
    main()
