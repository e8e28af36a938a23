"""FastCGI handler: the params a worker gets, request and response bodies, CGI response heads,
PHP, HTTP/2, streaming of large bodies with back-pressure, and worker stderr in the error log.

Real h2pool, real libfcgi test apps (tests/apps) and real php-cgi (tests/apps/php).
"""
import hashlib
import http.client
import json
import os
import re
import threading
import time
import unittest

import h2ptest

CONF = """
server:
  threads: 2
pools:
  echo: {command: ["{apps}/echo_fcgi"], max_processes: 2, {worker_user}}
  hello: {command: ["{apps}/hello_fcgi"], max_processes: 1, {worker_user}}
  big: {command: ["{apps}/big_fcgi"], max_processes: 2, {worker_user}}
  errs: {command: ["{apps}/stderr_fcgi"], max_processes: 1, {worker_user}}
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 2
    {worker_user}
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}", "http://127.0.0.1:{port:second}"]
    http2: true
    root: "{php}"
    handlers:
      - {path: "/echo/*", pool: echo}
      - {path: "/hello/*", pool: hello}
      - {path: "/big/*", pool: big}
      - {path: "/stderr/*", pool: errs}
      - {path: "*.php", pool: php}
"""


def parse_echo(body):
    """echo_fcgi's answer: ({param: value}, raw body)."""
    head, _, rest = body.partition(b"\n\nBODY=")
    params = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            params[k] = v
    return params, rest


def parse_lines(text):
    out = {}
    for line in text.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def asan_build():
    """True when h2pool is built with AddressSanitizer (its quarantine keeps freed memory resident)."""
    with open(h2ptest.BIN, "rb") as f:
        return b"__asan_init" in f.read()


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class FastCGITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = h2ptest.Server(CONF).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def get(self, path, *args, **kw):
        return self.server.get(path, *args, **kw)

    def echo(self, path="/echo/x.cgi", *args, **kw):
        r = self.get(path, *args, **kw)
        self.assertEqual(r.status, 200, r)
        return parse_echo(r.body)

    # ---- basics -----------------------------------------------------------------------------

    def test_hello_app_answers_200(self):
        r = self.get("/hello/x")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello from fastcgi\n")
        self.assertEqual(r.header("content-type"), "text/plain")

    # ---- CGI params -------------------------------------------------------------------------

    def test_params_method_uri_query(self):
        p, _ = self.echo("/echo/x.cgi?a=1&b=two")
        self.assertEqual(p["REQUEST_METHOD"], "GET")
        self.assertEqual(p["QUERY_STRING"], "a=1&b=two")
        self.assertEqual(p["REQUEST_URI"], "/echo/x.cgi?a=1&b=two")
        self.assertEqual(p["GATEWAY_INTERFACE"], "CGI/1.1")
        self.assertEqual(p["SERVER_PROTOCOL"], "HTTP/1.1")
        self.assertEqual(p["REDIRECT_STATUS"], "200")

    def test_params_empty_query_string(self):
        p, _ = self.echo("/echo/x.cgi")
        self.assertEqual(p["QUERY_STRING"], "")
        self.assertEqual(p["REQUEST_URI"], "/echo/x.cgi")

    def test_params_script_name_path_info_split(self):
        p, _ = self.echo("/echo/x.cgi/extra/more")
        self.assertEqual(p["SCRIPT_NAME"], "/echo/x.cgi")
        self.assertEqual(p["PATH_INFO"], "/extra/more")
        self.assertEqual(os.path.realpath(p["SCRIPT_FILENAME"]),
                         os.path.realpath(os.path.join(h2ptest.PHP_APPS, "echo/x.cgi")))

    def test_params_no_path_info_without_extra_segments(self):
        p, _ = self.echo("/echo/x.cgi")
        self.assertEqual(p["SCRIPT_NAME"], "/echo/x.cgi")
        self.assertNotIn("PATH_INFO", p)

    def test_params_remote_addr_and_ports(self):
        p, _ = self.echo()
        self.assertEqual(p["REMOTE_ADDR"], "127.0.0.1")
        self.assertEqual(p["SERVER_PORT"], str(self.server.port()))
        self.assertEqual(p["SERVER_ADDR"], "127.0.0.1")
        self.assertTrue(p["REMOTE_PORT"].isdigit() and int(p["REMOTE_PORT"]) > 0, p["REMOTE_PORT"])
        self.assertEqual(p["SERVER_NAME"], "127.0.0.1")
        self.assertEqual(p["HTTP_HOST"], f"127.0.0.1:{self.server.port()}")

    def test_server_port_is_each_connections_own(self):
        """SERVER_ADDR/SERVER_PORT are looked up once per connection and remembered: requests on
        kept-alive connections to two ports, interleaved, each see their own connection's port."""
        ports = [self.server.port(), self.server.port("second")]
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for port in ports]
        try:
            for _ in range(3):
                for port, conn in zip(ports, conns):
                    conn.request("GET", "/echo/x.cgi")
                    resp = conn.getresponse()
                    params, _ = parse_echo(resp.read())
                    self.assertEqual(resp.status, 200)
                    self.assertEqual(params["SERVER_PORT"], str(port))
                    self.assertEqual(params["SERVER_ADDR"], "127.0.0.1")
        finally:
            for conn in conns:
                conn.close()

    def test_params_http_headers(self):
        p, _ = self.echo("/echo/x.cgi", "-H", "X-Custom-Thing: hello world", "-H", "Accept-Language: de",
                         "-A", "h2ptest-agent")
        self.assertEqual(p["HTTP_X_CUSTOM_THING"], "hello world")
        self.assertEqual(p["HTTP_ACCEPT_LANGUAGE"], "de")
        self.assertEqual(p["HTTP_USER_AGENT"], "h2ptest-agent")

    def test_params_content_type_and_length(self):
        p, body = self.echo("/echo/x.cgi", "-H", "Content-Type: application/x-test", "--data-binary", "@-",
                            data=b"0123456789")
        self.assertEqual(p["REQUEST_METHOD"], "POST")
        self.assertEqual(p["CONTENT_TYPE"], "application/x-test")
        self.assertEqual(p["CONTENT_LENGTH"], "10")
        # CGI has CONTENT_TYPE/LENGTH, never their HTTP_ twins
        self.assertNotIn("HTTP_CONTENT_TYPE", p)
        self.assertNotIn("HTTP_CONTENT_LENGTH", p)
        self.assertEqual(body, b"0123456789")

    def test_params_no_https_on_http(self):
        p, _ = self.echo()
        self.assertNotIn("HTTPS", p)
        self.assertEqual(p["REQUEST_SCHEME"], "http")

    def test_params_proxy_header_not_passed(self):
        # httpoxy: a client's "Proxy:" must never become HTTP_PROXY in the application
        p, _ = self.echo("/echo/x.cgi", "-H", "Proxy: http://evil.example:8080/")
        self.assertNotIn("HTTP_PROXY", p)

    def test_params_header_with_underscore_not_passed(self):
        # "X_Forwarded_User" would otherwise impersonate "X-Forwarded-User" (both HTTP_X_FORWARDED_USER)
        p, _ = self.echo("/echo/x.cgi", "-H", "X_Forwarded_User: mallory")
        self.assertNotIn("HTTP_X_FORWARDED_USER", p)
        self.assertNotIn("mallory", "\n".join(p.values()))

    def test_params_repeated_header_joined(self):
        p, _ = self.echo("/echo/x.cgi", "-H", "X-Multi: one", "-H", "X-Multi: two")
        self.assertEqual(p["HTTP_X_MULTI"], "one, two")

    # ---- request bodies ---------------------------------------------------------------------

    def test_post_binary_body_echoed_exactly(self):
        payload = bytes(range(256)) * 16 + b"\r\n\x00\xff end"
        p, body = self.echo("/echo/x.cgi", "-H", "Content-Type: application/octet-stream", "--data-binary", "@-",
                            data=payload)
        self.assertEqual(p["CONTENT_LENGTH"], str(len(payload)))
        self.assertEqual(p["BODY-LENGTH"], str(len(payload)))
        self.assertEqual(body, payload)

    def test_post_one_megabyte_body_echoed_exactly(self):
        payload = os.urandom(1024 * 1024)
        p, body = self.echo("/echo/x.cgi", "-H", "Content-Type: application/octet-stream", "--data-binary", "@-",
                            data=payload)
        self.assertEqual(p["BODY-LENGTH"], str(len(payload)))
        self.assertEqual(len(body), len(payload))
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(payload).hexdigest())

    def test_post_empty_body(self):
        p, body = self.echo("/echo/x.cgi", "-X", "POST", "-H", "Content-Length: 0")
        self.assertEqual(p["REQUEST_METHOD"], "POST")
        self.assertEqual(p["BODY-LENGTH"], "0")
        self.assertEqual(body, b"")

    # ---- CGI response heads -----------------------------------------------------------------

    def test_status_header_sets_status(self):
        r = self.get("/echo/x.cgi?status=404%20Not%20Here")
        self.assertEqual(r.status, 404)
        self.assertNotIn("status", r.headers)

    def test_status_header_with_location(self):
        r = self.get("/echo/x.cgi?status=301%20Moved&header=Location:%20http://example.test/new")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "http://example.test/new")

    def test_location_alone_means_302(self):
        r = self.get("/echo/x.cgi?header=Location:%20http://example.test/elsewhere")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("location"), "http://example.test/elsewhere")

    def test_head_request_has_no_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port(), timeout=30)
        self.addCleanup(conn.close)
        conn.request("HEAD", "/echo/x.cgi?header=X-App:%20h")
        r = conn.getresponse()
        self.assertEqual((r.status, r.getheader("x-app"), r.read()), (200, "h", b""))
        conn.request("GET", "/hello/x")  # the same client connection: nothing of a body was left on it
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"hello from fastcgi\n"))
        p, _ = self.echo()  # and the worker's connection is still in order
        self.assertEqual(p["REQUEST_METHOD"], "GET")

    def test_custom_response_header_passed(self):
        r = self.get("/echo/x.cgi?header=X-App:%20value-1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-app"), "value-1")

    def test_malformed_head_is_502(self):
        r = self.get("/echo/x.cgi?header=no-colon-here")
        self.assertEqual(r.status, 502)
        self.assertEqual(self.get("/echo/x.cgi").status, 200)

    # ---- PHP --------------------------------------------------------------------------------

    def test_php_hello(self):
        r = self.get("/hello.php")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello from php\n")

    def test_php_env(self):
        r = self.get("/env.php?x=1", "-H", "X-From-Test: yes")
        self.assertEqual(r.status, 200, r)
        env = parse_lines(r.text)
        self.assertEqual(env["REQUEST_METHOD"], "GET")
        self.assertEqual(env["QUERY_STRING"], "x=1")
        self.assertEqual(env["REQUEST_URI"], "/env.php?x=1")
        self.assertEqual(env["SCRIPT_NAME"], "/env.php")
        self.assertTrue(env["SCRIPT_FILENAME"].endswith("/env.php"), env["SCRIPT_FILENAME"])
        self.assertTrue(os.path.samefile(env["SCRIPT_FILENAME"], os.path.join(h2ptest.PHP_APPS, "env.php")))
        self.assertEqual(env["HTTP_X_FROM_TEST"], "yes")
        self.assertEqual(env["REMOTE_ADDR"], "127.0.0.1")
        self.assertEqual(env["SERVER_PORT"], str(self.server.port()))
        self.assertNotIn("HTTPS", env)

    def test_php_pathinfo_split(self):
        r = self.get("/pathinfo.php/a/b?q=1")
        self.assertEqual(r.status, 200, r)
        v = parse_lines(r.text)
        self.assertEqual(v["SCRIPT_NAME"], "/pathinfo.php")
        self.assertEqual(v["PATH_INFO"], "/a/b")
        self.assertTrue(v["SCRIPT_FILENAME"].endswith("/pathinfo.php"), v)
        self.assertEqual(v["REQUEST_URI"], "/pathinfo.php/a/b?q=1")
        self.assertEqual(v["QUERY_STRING"], "q=1")

    def test_php_post_form(self):
        r = self.get("/post.php", "--data", "a=1&b=hello+world")
        self.assertEqual(r.status, 200, r)
        j = json.loads(r.body)
        self.assertEqual(j["method"], "POST")
        self.assertEqual(j["content_type"], "application/x-www-form-urlencoded")
        self.assertEqual(j["post"], {"a": "1", "b": "hello world"})
        self.assertEqual(j["input"], "a=1&b=hello+world")

    def test_php_post_json(self):
        doc = b'{"name": "h2pool", "list": [1, 2, 3], "nested": {"k": "v"}}'
        r = self.get("/post.php", "-H", "Content-Type: application/json", "--data-binary", "@-", data=doc)
        self.assertEqual(r.status, 200, r)
        j = json.loads(r.body)
        self.assertEqual(j["content_type"], "application/json")
        self.assertEqual(j["input_length"], len(doc))
        self.assertEqual(j["input"], doc.decode())
        self.assertEqual(j["post"], {})

    def test_php_headers_cookie_and_custom_header(self):
        r = self.get("/headers.php")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-test"), "yes")
        self.assertIn("h2pool_test=cookie-value", r.header("set-cookie") or "")
        self.assertIn("status=200", r.text)

    def test_php_http_response_code(self):
        r = self.get("/headers.php?code=418")
        self.assertEqual(r.status, 418, r)
        self.assertEqual(r.header("x-test"), "yes")
        self.assertIn("status=418", r.text)

    # ---- HTTP/2 -----------------------------------------------------------------------------

    def test_http2_prior_knowledge_to_fastcgi(self):
        r = self.get("/echo/x.cgi/p?h=2", "--http2-prior-knowledge", "-H", "X-Over-H2: yes")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.version, "2")
        p, _ = parse_echo(r.body)
        self.assertEqual(p["SERVER_PROTOCOL"], "HTTP/2.0")
        self.assertEqual(p["HTTP_X_OVER_H2"], "yes")
        self.assertEqual(p["PATH_INFO"], "/p")
        self.assertEqual(p["QUERY_STRING"], "h=2")

    def test_http2_post_body(self):
        payload = os.urandom(200 * 1024)
        r = self.get("/echo/x.cgi", "--http2-prior-knowledge", "--data-binary", "@-", data=payload)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.version, "2")
        _, body = parse_echo(r.body)
        self.assertEqual(body, payload)

    def test_http2_php(self):
        r = self.get("/hello.php", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version, r.body), (200, "2", b"hello from php\n"))

    # ---- large and slow responses -----------------------------------------------------------

    @staticmethod
    def expected_big(size):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
        return (line * (size // 64 + 1))[:size]

    def test_big_body_streamed_intact(self):
        size = 10 * 1024 * 1024
        r = self.get("/big/x?mb=10")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), str(size))
        self.assertEqual(len(r.body), size)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(self.expected_big(size)).hexdigest())

    def test_big_body_over_http2_intact(self):
        size = 10 * 1024 * 1024
        r = self.get("/big/x?mb=10", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (200, "2"))
        self.assertEqual(len(r.body), size)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(self.expected_big(size)).hexdigest())

    def test_slow_client_gets_whole_body_in_bounded_memory(self):
        # The worker writes 10 MiB at once; the client reads at 1 MB/s.  Back-pressure must keep the
        # body in the worker's socket, not in h2pool: its RSS may not grow by anything near 10 MiB.
        # (1 MB/s rather than 200 kB/s keeps this test at ~10 s; the bound checked is the same.)
        size = 10 * 1024 * 1024
        pid = self.server.proc.pid
        self.assertEqual(self.get("/big/x?kb=1").status, 200)  # warm: worker spawned, buffers allocated
        before = vm_kib(pid, "VmRSS")
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], vm_kib(pid, "VmRSS"))
                except (OSError, AssertionError):
                    pass
                time.sleep(0.05)

        t = threading.Thread(target=sample)
        t.start()
        try:
            r = self.get("/big/x?mb=10", "--limit-rate", "1M", timeout=120)
        finally:
            done.set()
            t.join()
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), size)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(self.expected_big(size)).hexdigest())
        growth_kib = peak[0] - before
        if asan_build():
            self.skipTest(f"body checked; RSS bound not meaningful under ASan (its quarantine holds freed buffers: "
                          f"grew {growth_kib} KiB)")
        self.assertLess(growth_kib, 10 * 1024, f"h2pool RSS grew by {growth_kib} KiB while streaming 10 MiB")

    # ---- worker stderr ----------------------------------------------------------------------

    def test_stderr_reaches_error_log_tagged(self):
        r = self.get("/stderr/x")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        pat = re.compile(r"\[pool errs\].*worker (\d+): stderr-marker (\d+)")

        def found():
            return pat.search(self.server.read_log())

        m = h2ptest.wait_until(found, what="stderr marker in the log")
        self.assertEqual(m.group(1), m.group(2), m.group(0))
        self.assertIn(int(m.group(1)), self.server.workers())


if __name__ == "__main__":
    h2ptest.main()
