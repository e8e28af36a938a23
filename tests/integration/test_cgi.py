"""CGI handler (RFC 3875): handler mappings with `cgi: true` run one process per request.

Real h2pool, real /bin/sh scripts written into the test dir, curl over loopback (HTTP/1.1 and
HTTP/2 prior knowledge), and git's git-http-backend as a real-world CGI program.
"""
import os
import re
import shutil
import signal
import subprocess
import unittest

import h2ptest
from h2ptest import Server, curl, process_alive, raw_request, wait_until

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


CONF = """
server:
  threads: 2
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}"]
    http2: true
    root: "{dir}/www"
    handlers:
      - {path: "/cgi-bin/*.cgi", cgi: true}
    applications:
      /app: {root: "{dir}/approot", handlers: [{path: "*.cgi", cgi: true}]}
"""

GIT_CONF = """
server:
  threads: 2
sites:
  git:
    bindings: ["http://127.0.0.1:{port:http}"]
    http2: true
    root: "{dir}/www"
    handlers:
      - {path: "/cgi-bin/*.cgi", cgi: true}
"""

AS_ROOT = os.geteuid() == 0
BIG = 5000000
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def script(body):
    return "#!/bin/sh\n" + body


# Every variable in `env` output; CGI meta-variables are the script's whole environment.
ENV = script("printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n")

SCRIPTS = {
    "env.cgi": ENV,
    "echo.cgi": script("printf 'Content-Type: application/octet-stream\\r\\nX-Method: %s\\r\\n\\r\\n' \"$REQUEST_METHOD\"\n"
                       "cat\n"),
    "status.cgi": script("printf 'Status: 404 Not Here\\r\\nContent-Type: text/plain\\r\\n\\r\\nthe script says 404\\n'\n"),
    "created.cgi": script("printf 'Status: 201 Created\\nContent-Type: text/plain\\nX-Custom: yes\\n\\ncreated\\n'\n"),
    "redirect.cgi": script("printf 'Location: http://example.test/elsewhere?a=1\\r\\n\\r\\n'\n"),
    "local_redirect.cgi": script("printf 'Location: /somewhere/else\\r\\n\\r\\n'\n"),
    "redirect_status.cgi": script("printf 'Status: 301 Moved Permanently\\r\\nLocation: http://example.test/moved\\r\\n\\r\\n'\n"),
    "noexec.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\nshould never run\\n'\n"),
    "garbage.cgi": script("echo 'this is not a CGI header block'\necho 'neither is this'\nexit 0\n"),
    "unterminated.cgi": script("printf 'Content-Type: text/plain\\r\\nX-Almost: there\\r\\n'\nexit 0\n"),
    "silent.cgi": script("exit 0\n"),
    "badinterp.cgi": "#!/nonexistent/interpreter\nprint('hi')\n",
    "big.cgi": script(f"printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nhead -c {BIG} /dev/zero\n"),
    "seq.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\n'\nseq 1 700000\n"),
    "sized.cgi": script("printf 'Content-Type: text/plain\\r\\nContent-Length: 6\\r\\n\\r\\nsized\\n'\n"),
    "short.cgi": script("printf 'Content-Type: text/plain\\r\\nContent-Length: 100\\r\\n\\r\\nonly a few bytes\\n'\n"),
    "stderr.cgi": script("echo \"cgi-stderr-first-line $QUERY_STRING $$\" >&2\necho \"cgi-stderr-second-line $QUERY_STRING\" >&2\n"
                         "printf 'Content-Type: text/plain\\r\\n\\r\\nbody after stderr\\n'\n"),
    "whoami.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\n'\nid -un\nid -u\n"),
    "pwd.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\n'\npwd\n"),
    # records its PID and its child's, then waits: killed (whole process group) when the client leaves
    "slow.cgi": script("echo $$ > \"$DOCUMENT_ROOT/../run/$QUERY_STRING.pid\"\n"
                       "sleep 30 &\necho $! > \"$DOCUMENT_ROOT/../run/$QUERY_STRING.child\"\nwait\n"
                       "printf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'\n"),
    # same, but the response head and some body are already out when the client leaves
    "slowbody.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\nfirst part\\n'\n"
                           "echo $$ > \"$DOCUMENT_ROOT/../run/$QUERY_STRING.pid\"\n"
                           "sleep 30 &\necho $! > \"$DOCUMENT_ROOT/../run/$QUERY_STRING.child\"\nwait\n"
                           "echo 'second part'\n"),
    "noread.cgi": script("printf 'Content-Type: text/plain\\r\\n\\r\\ndid not read the body\\n'\n"),
    "nocontent.cgi": script("printf 'Status: 204 No Content\r\nContent-Length: 5\r\n\r\njunk\n'\n"),
    "notmodified.cgi": script("printf 'Status: 304 Not Modified\r\nETag: \"e1\"\r\n\r\nbody that must not be sent\n'\n"),
    "interim.cgi": script("printf 'Status: 100 Continue\r\n\r\n'\n"),
    "hop.cgi": script("printf 'Content-Type: text/plain\\r\\nConnection: close\\r\\nTransfer-Encoding: chunked\\r\\n"
                      "X-Kept: 1\\r\\n\\r\\nplain body\\n'\n"),
}


def parse_env(body):
    out = {}
    for line in body.decode("utf-8", "replace").split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


class CGITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(CONF)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        for name, text in SCRIPTS.items():
            cls.server.write("www/cgi-bin/" + name, text, 0o644 if name == "noexec.cgi" else 0o755)
        cls.server.write("www/cgi-bin/subdir.cgi/.keep", "")
        cls.server.write("www/plain.txt", "static, not CGI\n")
        cls.server.write("approot/env.cgi", ENV, 0o755)
        # where scripts (running as nobody when the tests run as root) record their PIDs
        os.makedirs(cls.server.path("run"))
        os.chmod(cls.server.path("run"), 0o1777)
        cls.server.start()

    def get(self, path, *args, **kw):
        return self.server.get(path, *args, **kw)

    def env(self, path="/cgi-bin/env.cgi", *args):
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        return parse_env(r.body)

    # ---- the response ---------------------------------------------------------------------

    def test_headers_and_body(self):
        r = self.get("/cgi-bin/created.cgi")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("content-type"), "text/plain")
        self.assertEqual(r.header("x-custom"), "yes")
        self.assertEqual(r.body, b"created\n")
        self.assertNotIn("status", r.headers)

    def test_content_length_from_the_script(self):
        r = self.get("/cgi-bin/sized.cgi")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-length"), "6")
        self.assertEqual(r.body, b"sized\n")

    def test_short_body_against_content_length_is_cut_off(self):
        # the script announced 100 bytes and sent 17: the client must see a truncated response
        r = self.get("/cgi-bin/short.cgi")
        self.assertNotEqual(len(r.body), 100)
        self.assertLess(len(r.body), 100)

    def test_hop_by_hop_headers_from_the_script_are_dropped(self):
        r = self.get("/cgi-bin/hop.cgi")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"plain body\n")
        self.assertEqual(r.header("x-kept"), "1")
        # keep-alive is h2pool's call, not the script's; the body is not double-chunked
        out = raw_request(self.server.port(), b"GET /cgi-bin/hop.cgi HTTP/1.1\r\nHost: x\r\n\r\n"
                                                b"GET /cgi-bin/sized.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(out.count(b"HTTP/1.1 200"), 2, out)
        self.assertIn(b"sized\n", out)

    def test_status_header_is_honoured(self):
        r = self.get("/cgi-bin/status.cgi")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.body, b"the script says 404\n")
        r = self.get("/cgi-bin/status.cgi", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version, r.body), (404, "2", b"the script says 404\n"))

    def test_location_gives_302(self):
        r = self.get("/cgi-bin/redirect.cgi")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("location"), "http://example.test/elsewhere?a=1")
        # RFC 3875 6.2.2 lets the server either serve a local path or redirect to it: a redirect
        r = self.get("/cgi-bin/local_redirect.cgi")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("location"), "/somewhere/else")
        # an explicit Status: wins over the implied 302
        r = self.get("/cgi-bin/redirect_status.cgi")
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.header("location"), "http://example.test/moved")

    def test_head_request(self):
        out = raw_request(self.server.port(), b"HEAD /cgi-bin/created.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 201"), out)
        self.assertIn(b"\r\nx-custom: yes", head.lower())
        self.assertEqual(body, b"")
        r = self.get("/cgi-bin/created.cgi", "--head", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version, r.header("x-custom")), (201, "2", "yes"))

    def exchange_then_get(self, first):
        """`first` then a GET on the same HTTP/1.1 connection: [(status line, headers+body bytes)]."""
        out = raw_request(self.server.port(), first + b"GET /cgi-bin/sized.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return out

    def test_head_body_never_reaches_the_connection(self):
        # a HEAD's body bytes would be read as the next response on a keep-alive connection
        out = self.exchange_then_get(b"HEAD /cgi-bin/created.cgi HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 201"), out)
        self.assertNotIn(b"created\n", out)
        second = out[out.index(b"\r\n\r\n") + 4:]
        self.assertTrue(second.startswith(b"HTTP/1.1 200"), out)
        self.assertTrue(second.endswith(b"\r\n\r\nsized\n"), out)

    def test_head_keeps_the_scripts_content_length(self):
        out = raw_request(self.server.port(), b"HEAD /cgi-bin/sized.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b"\r\ncontent-length: 6", head.lower())
        self.assertEqual(body, b"")

    def test_204_and_304_have_no_body(self):
        for script, status in (("nocontent.cgi", b"204"), ("notmodified.cgi", b"304")):
            with self.subTest(script=script):
                out = self.exchange_then_get(f"GET /cgi-bin/{script} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                self.assertTrue(out.startswith(b"HTTP/1.1 " + status), out)
                self.assertNotIn(b"junk", out)
                self.assertNotIn(b"must not be sent", out)
                second = out[out.index(b"\r\n\r\n") + 4:]
                self.assertTrue(second.startswith(b"HTTP/1.1 200"), out)
                self.assertTrue(second.endswith(b"\r\n\r\nsized\n"), out)
        out = raw_request(self.server.port(), b"GET /cgi-bin/nocontent.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertNotIn(b"content-length", out.lower())  # RFC 9110 8.6
        r = self.get("/cgi-bin/notmodified.cgi", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.body, r.header("etag")), (304, b"", '"e1"'))

    # ---- errors ---------------------------------------------------------------------------

    def test_non_executable_script_gives_403(self):
        r = self.get("/cgi-bin/noexec.cgi")
        self.assertEqual(r.status, 403, r)
        self.assertNotIn(b"should never run", r.body)

    def test_missing_script_gives_404(self):
        for path in ("/cgi-bin/missing.cgi", "/cgi-bin/missing.cgi/extra/info"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 404, r)
        # a directory named like a script is no script (IIS resourceType: File): it is a directory
        self.assertEqual(self.get("/cgi-bin/subdir.cgi/").status, 403)
        r = self.get("/cgi-bin/subdir.cgi/.keep")
        self.assertEqual((r.status, r.body), (200, b""))
        r = self.get("/cgi-bin/missing.cgi", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (404, "2"))

    def test_garbage_output_gives_502(self):
        for name in ("garbage.cgi", "unterminated.cgi", "silent.cgi", "badinterp.cgi", "interim.cgi"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(script=name, proto=proto):
                    r = self.get("/cgi-bin/" + name, *proto)
                    self.assertEqual(r.status, 502, r)
                    self.assertNotIn(b"not a CGI header block", r.body)
        # the server is still fine afterwards
        self.assertEqual(self.get("/cgi-bin/sized.cgi").body, b"sized\n")

    def test_unmapped_paths_are_static(self):
        r = self.get("/plain.txt")
        self.assertEqual((r.status, r.body), (200, b"static, not CGI\n"))
        # the mapping is "/cgi-bin/*.cgi": a .cgi elsewhere is not run
        r = self.get("/cgi-bin.cgi")
        self.assertEqual(r.status, 404, r)

    # ---- CGI meta-variables (RFC 3875 section 4.1) -----------------------------------------

    def test_variables_for_a_get(self):
        port = self.server.port()
        e = self.env("/cgi-bin/env.cgi?a=1&b=%20x")
        self.assertEqual(e["GATEWAY_INTERFACE"], "CGI/1.1")
        self.assertEqual(e["REQUEST_METHOD"], "GET")
        self.assertEqual(e["QUERY_STRING"], "a=1&b=%20x")
        self.assertEqual(e["SCRIPT_NAME"], "/cgi-bin/env.cgi")
        self.assertEqual(e["SCRIPT_FILENAME"], self.server.path("www/cgi-bin/env.cgi"))
        self.assertEqual(e["DOCUMENT_ROOT"], self.server.path("www"))
        self.assertEqual(e["SERVER_PROTOCOL"], "HTTP/1.1")
        self.assertEqual(e["REMOTE_ADDR"], "127.0.0.1")
        self.assertRegex(e["REMOTE_PORT"], r"^[1-9][0-9]*$")
        self.assertEqual(e["SERVER_ADDR"], "127.0.0.1")
        self.assertEqual(e["SERVER_PORT"], str(port))
        self.assertEqual(e["SERVER_NAME"], "127.0.0.1")
        self.assertEqual(e["REQUEST_URI"], "/cgi-bin/env.cgi?a=1&b=%20x")
        self.assertTrue(e["SERVER_SOFTWARE"].startswith("h2pool"), e)
        self.assertEqual(e["HTTP_HOST"], f"127.0.0.1:{port}")
        # no PATH_INFO in the URL: PATH_INFO is absent or empty (RFC 3875 4.1.5), no body: no CONTENT_*
        self.assertEqual(e.get("PATH_INFO", ""), "")
        self.assertNotIn("PATH_TRANSLATED", e)
        self.assertNotIn("CONTENT_LENGTH", e)
        self.assertNotIn("CONTENT_TYPE", e)

    def test_empty_query_string(self):
        e = self.env()
        self.assertEqual(e["QUERY_STRING"], "")

    def test_path_info_split(self):
        e = self.env("/cgi-bin/env.cgi/extra")
        self.assertEqual(e["SCRIPT_NAME"], "/cgi-bin/env.cgi")
        self.assertEqual(e["PATH_INFO"], "/extra")
        self.assertEqual(e["SCRIPT_FILENAME"], self.server.path("www/cgi-bin/env.cgi"))
        self.assertEqual(e["PATH_TRANSLATED"], self.server.path("www") + "/extra")
        e = self.env("/cgi-bin/env.cgi/a/b%20c/d.txt?q=1")
        self.assertEqual(e["SCRIPT_NAME"], "/cgi-bin/env.cgi")
        self.assertEqual(e["PATH_INFO"], "/a/b c/d.txt")  # decoded (RFC 3875 4.1.5)
        self.assertEqual(e["QUERY_STRING"], "q=1")
        self.assertEqual(e["REQUEST_URI"], "/cgi-bin/env.cgi/a/b%20c/d.txt?q=1")

    def test_server_name_from_the_host_header(self):
        e = self.env("/cgi-bin/env.cgi", "-H", "Host: Example.Test:8080")
        self.assertEqual(e["SERVER_NAME"].lower(), "example.test")
        self.assertEqual(e["HTTP_HOST"].lower(), "example.test:8080")
        self.assertEqual(e["SERVER_PORT"], str(self.server.port()))  # the port that took the connection

    def test_script_in_an_application(self):
        e = self.env("/app/env.cgi/more/info?z=9")
        self.assertEqual(e["SCRIPT_NAME"], "/app/env.cgi")
        self.assertEqual(e["PATH_INFO"], "/more/info")
        self.assertEqual(e["SCRIPT_FILENAME"], self.server.path("approot/env.cgi"))
        self.assertEqual(e["DOCUMENT_ROOT"], self.server.path("approot"))
        self.assertEqual(e["QUERY_STRING"], "z=9")

    def test_http2_server_protocol(self):
        r = self.get("/cgi-bin/env.cgi/h2?x=y", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (200, "2"), r)
        e = parse_env(r.body)
        self.assertIn(e["SERVER_PROTOCOL"], ("HTTP/2", "HTTP/2.0"))
        self.assertEqual(e["PATH_INFO"], "/h2")
        self.assertEqual(e["QUERY_STRING"], "x=y")
        self.assertEqual(e["HTTP_HOST"], f"127.0.0.1:{self.server.port()}")

    def test_http10_server_protocol(self):
        out = raw_request(self.server.port(), b"GET /cgi-bin/env.cgi HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1."), out)
        e = parse_env(out.partition(b"\r\n\r\n")[2])
        self.assertEqual(e["SERVER_PROTOCOL"], "HTTP/1.0")

    def test_http10_keepalive_client_can_delimit_the_body(self):
        # HTTP/1.0 has no chunked coding: a body without Content-Length must end with the connection
        out = raw_request(self.server.port(), b"GET /cgi-bin/created.cgi HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 201"), out)
        self.assertIn(b"\r\nconnection: close", head.lower())
        self.assertEqual(body, b"created\n")
        # with a Content-Length from the script, keep-alive stays: a second request is answered
        req = b"GET /cgi-bin/sized.cgi HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        out = raw_request(self.server.port(), req + b"GET /cgi-bin/sized.cgi HTTP/1.0\r\n\r\n")
        self.assertEqual(out.count(b"sized\n"), 2, out)

    def test_request_headers_become_http_variables(self):
        e = self.env("/cgi-bin/env.cgi", "-H", "X-Custom-Thing: some value", "-H", "Accept-Language: fr",
                     "-H", "Cookie: a=1", "-H", "Cookie: b=2", "-H", "X-Multi: one", "-H", "X-Multi: two",
                     "-H", "User-Agent: cgi-test/1.0")
        self.assertEqual(e["HTTP_X_CUSTOM_THING"], "some value")
        self.assertEqual(e["HTTP_ACCEPT_LANGUAGE"], "fr")
        self.assertEqual(e["HTTP_USER_AGENT"], "cgi-test/1.0")
        self.assertEqual(e["HTTP_COOKIE"], "a=1; b=2")
        self.assertEqual(e["HTTP_X_MULTI"], "one, two")

    def test_proxy_header_is_not_passed_httpoxy(self):
        e = self.env("/cgi-bin/env.cgi", "-H", "Proxy: http://evil.test:3128/", "-H", "X_Forwarded_Evil: 1",
                     "--http1.1")
        self.assertNotIn("HTTP_PROXY", e)
        self.assertFalse(any("evil" in v for v in e.values()), e)
        r = self.get("/cgi-bin/env.cgi", "--http2-prior-knowledge", "-H", "Proxy: http://evil.test:3128/")
        self.assertNotIn("HTTP_PROXY", parse_env(r.body))

    def test_hop_by_hop_and_body_headers_are_not_http_variables(self):
        e = self.env("/cgi-bin/env.cgi", "-H", "Connection: keep-alive, X-Foo", "-H", "TE: trailers")
        for name in ("HTTP_CONNECTION", "HTTP_TE", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_TRANSFER_ENCODING"):
            self.assertNotIn(name, e)

    def test_environment_is_only_cgi_variables(self):
        e = self.env()
        # nothing of h2pool's own environment leaks (it was started with the test runner's)
        for name in os.environ:
            if name not in ("PATH", "PWD", "SHLVL", "_") and not name.startswith("HTTP_"):
                self.assertNotIn(name, e, f"{name} leaked into the CGI environment")

    def test_post_variables_and_body_on_stdin(self):
        body = b"name=value&other=%41"
        r = self.get("/cgi-bin/echo.cgi?x=1", "--data-binary", "@-", "-H", "Content-Type: application/x-www-form-urlencoded",
                     data=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-method"), "POST")
        self.assertEqual(r.body, body)
        r = self.get("/cgi-bin/env.cgi", "--data-binary", "@-", "-H", "Content-Type: text/x-test; charset=utf-8",
                     data=body)
        e = parse_env(r.body)
        self.assertEqual(e["REQUEST_METHOD"], "POST")
        self.assertEqual(e["CONTENT_LENGTH"], str(len(body)))
        self.assertEqual(e["CONTENT_TYPE"], "text/x-test; charset=utf-8")

    def test_large_post_body_echoed(self):
        # bigger than a pipe buffer both ways: the script reads stdin while h2pool reads its stdout
        body = bytes(range(256)) * 4096 * 2  # 2 MiB
        for proto in ((), ("--http2-prior-knowledge",)):
            with self.subTest(proto=proto):
                r = self.get("/cgi-bin/echo.cgi", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
                             *proto, data=body)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(len(r.body), len(body))
                self.assertTrue(r.body == body, "echoed body differs")

    def test_chunked_request_body(self):
        body = b"chunked request body\n" * 1000
        r = self.get("/cgi-bin/echo.cgi", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked", data=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        e = parse_env(self.get("/cgi-bin/env.cgi", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked",
                               data=body).body)
        self.assertEqual(e["CONTENT_LENGTH"], str(len(body)))  # the server knows the length: RFC 3875 4.1.2

    def test_script_that_ignores_its_body(self):
        body = b"x" * (1 << 20)  # more than a pipe holds: the write to the script's stdin fails
        r = self.get("/cgi-bin/noread.cgi", "--data-binary", "@-", data=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"did not read the body\n")
        self.assertEqual(self.get("/cgi-bin/sized.cgi").body, b"sized\n")

    def test_put_and_delete_reach_the_script(self):
        r = self.get("/cgi-bin/echo.cgi", "-X", "PUT", "--data-binary", "@-", data=b"put body")
        self.assertEqual((r.status, r.header("x-method"), r.body), (200, "PUT", b"put body"))
        r = self.get("/cgi-bin/echo.cgi", "-X", "DELETE")
        self.assertEqual((r.status, r.header("x-method"), r.body), (200, "DELETE", b""))

    # ---- streaming ------------------------------------------------------------------------

    def test_five_megabytes_stream_intact(self):
        for proto in ((), ("--http2-prior-knowledge",)):
            with self.subTest(proto=proto):
                r = self.get("/cgi-bin/big.cgi", *proto)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(len(r.body), BIG)
                self.assertEqual(r.body.count(b"\0"), BIG)

    def test_large_patterned_body_in_order(self):
        expected = "".join(f"{i}\n" for i in range(1, 700001)).encode()
        for proto in ((), ("--http2-prior-knowledge",)):
            with self.subTest(proto=proto):
                r = self.get("/cgi-bin/seq.cgi", *proto)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(len(r.body), len(expected))
                self.assertTrue(r.body == expected, "body differs from seq output")

    def test_slow_reader_gets_everything(self):
        # a client reading at 2 MB/s: h2pool stops reading the script while the client lags
        r = self.get("/cgi-bin/big.cgi", "--limit-rate", "2M")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), BIG)

    def test_concurrent_requests(self):
        procs = [subprocess.Popen(["curl", "-s", "-o", "-", *(["--http2-prior-knowledge"] if i % 2 else []),
                                   self.server.url(f"/cgi-bin/env.cgi/n{i}?i={i}")], stdout=subprocess.PIPE)
                 for i in range(16)]
        for i, p in enumerate(procs):
            out, _ = p.communicate(timeout=60)
            e = parse_env(out)
            self.assertEqual(e.get("PATH_INFO"), f"/n{i}")
            self.assertEqual(e.get("QUERY_STRING"), f"i={i}")

    # ---- the process ----------------------------------------------------------------------

    def test_stderr_lines_land_in_the_error_log(self):
        r = self.get("/cgi-bin/stderr.cgi?single")
        self.assertEqual((r.status, r.body), (200, b"body after stderr\n"))
        log = wait_until(lambda: (lambda t: t if "cgi-stderr-second-line single" in t else None)(self.server.read_log()),
                         what="the script's stderr in the error log")
        first = [line for line in log.splitlines() if "cgi-stderr-first-line single" in line]
        self.assertEqual(len(first), 1, first)  # one log line per stderr line, tagged with the script's PID
        pid = first[0].split()[-1]
        self.assertIn(pid, first[0][:first[0].index("cgi-stderr-first-line")])
        self.assertNotIn("body after stderr", log)

    def test_stderr_is_not_lost_when_the_script_ends_quickly(self):
        for i in range(20):
            self.assertEqual(self.get(f"/cgi-bin/stderr.cgi?burst{i}").status, 200)
        # by then every script has ended; its stderr is in the log or on its way there
        wait_until(lambda: all(f"cgi-stderr-second-line burst{i}\n" in self.server.read_log() for i in range(20)),
                   timeout=10, what="every stderr line in the error log")

    @unittest.skipUnless(AS_ROOT, "scripts run as the invoking user when h2pool is not root")
    def test_script_runs_as_nobody_under_root(self):
        r = self.get("/cgi-bin/whoami.cgi")
        self.assertEqual(r.status, 200, r)
        name, uid = r.text.split()
        self.assertEqual(name, "nobody")
        self.assertNotEqual(uid, "0")

    def test_script_runs_as_the_server_user_otherwise(self):
        if AS_ROOT:
            self.skipTest("h2pool runs as root here")
        r = self.get("/cgi-bin/whoami.cgi")
        self.assertEqual(r.text.split()[1], str(os.getuid()))

    def test_working_directory_is_the_scripts(self):
        r = self.get("/cgi-bin/pwd.cgi")
        self.assertEqual(r.text.strip(), self.server.path("www/cgi-bin"))

    def no_zombies(self):
        pid = self.server.spawner()  # (the scripts' parent)
        zombies = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] == "Z":
                zombies.append(int(entry))
        return not zombies

    def test_finished_scripts_are_reaped(self):
        for _ in range(5):
            self.get("/cgi-bin/sized.cgi")
        wait_until(self.no_zombies, what="no zombie CGI processes")

    def read_pids(self, tag):
        def ready():
            try:
                with open(self.server.path(f"run/{tag}.pid")) as f, open(self.server.path(f"run/{tag}.child")) as g:
                    a, b = f.read().strip(), g.read().strip()
                    return (int(a), int(b)) if a and b else None
            except (OSError, ValueError):
                return None
        return wait_until(ready, what="the script to record its PIDs")

    def assert_killed_on_disconnect(self, script, tag, *args):
        r = curl(self.server.url(f"/cgi-bin/{script}?{tag}"), *args, timeout=1)
        self.assertNotEqual(r.body, b"first part\nsecond part\n")
        pid, child = self.read_pids(tag)
        wait_until(lambda: not process_alive(pid) and not process_alive(child), timeout=10,
                   what=f"script {pid} (and its child {child}) to be killed after the client left")
        wait_until(self.no_zombies, what="no zombie CGI processes")

    def test_slow_script_killed_on_client_disconnect_http1(self):
        self.assert_killed_on_disconnect("slow.cgi", "h1-nohead", "--http1.1")

    def test_slow_script_killed_on_client_disconnect_http2(self):
        self.assert_killed_on_disconnect("slow.cgi", "h2-nohead", "--http2-prior-knowledge")

    def test_streaming_script_killed_on_client_disconnect_http1(self):
        self.assert_killed_on_disconnect("slowbody.cgi", "h1-body", "--http1.1")

    def test_streaming_script_killed_on_client_disconnect_http2(self):
        self.assert_killed_on_disconnect("slowbody.cgi", "h2-body", "--http2-prior-knowledge")


def git(*args, cwd=None, env=None):
    full = dict(os.environ, GIT_AUTHOR_NAME="CGI Test", GIT_AUTHOR_EMAIL="cgi@test", GIT_COMMITTER_NAME="CGI Test",
                GIT_COMMITTER_EMAIL="cgi@test", GIT_CONFIG_NOSYSTEM="1", HOME=cwd or "/nonexistent",
                GIT_TERMINAL_PROMPT="0", **(env or {}))
    return subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


@unittest.skipUnless(shutil.which("git") and os.access(HTTP_BACKEND, os.X_OK), "git and git-http-backend needed")
class GitHttpBackendTest(unittest.TestCase):
    """A real CGI program from Debian: git's smart HTTP server, git-http-backend(1).  It finds the
    repository at PATH_TRANSLATED (DOCUMENT_ROOT + PATH_INFO) and serves it when the repository
    has git-daemon-export-ok."""

    MESSAGE = "first commit over CGI"

    @classmethod
    def setUpClass(cls):
        cls.server = Server(GIT_CONF)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        s = cls.server
        os.makedirs(s.path("www/cgi-bin"))
        shutil.copy(HTTP_BACKEND, s.path("www/cgi-bin/git.cgi"))
        os.chmod(s.path("www/cgi-bin/git.cgi"), 0o755)
        work = s.path("work")
        os.makedirs(work)
        for args in (["init", "--bare", "-q", s.path("www/repo.git")], ["init", "-q", "-b", "main", work]):
            out = git(*args, cwd=s.dir)
            assert out.returncode == 0, out
        s.write("work/README", "served by git-http-backend through h2pool\n")
        for args in (["add", "README"], ["commit", "-q", "-m", cls.MESSAGE],
                     ["push", "-q", s.path("www/repo.git"), "main:main"]):
            out = git(*args, cwd=work)
            assert out.returncode == 0, out
        out = git("--git-dir", s.path("www/repo.git"), "symbolic-ref", "HEAD", "refs/heads/main", cwd=s.dir)
        assert out.returncode == 0, out
        cls.head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
        s.write("www/repo.git/git-daemon-export-ok", "")
        # not exported: no git-daemon-export-ok
        assert git("init", "--bare", "-q", s.path("www/private.git"), cwd=s.dir).returncode == 0
        if AS_ROOT:
            # the script runs as nobody, and git refuses a repository owned by someone else
            for repo in ("www/repo.git", "www/private.git"):
                subprocess.run(["chown", "-R", "nobody", s.path(repo)], check=True)
        s.start()

    def test_clone_over_http1(self):
        dest = self.server.path("clone1")
        out = git("-c", "http.version=HTTP/1.1", "-c", "protocol.version=0", "clone", "-q", self.server.url("/cgi-bin/git.cgi/repo.git"), dest,
                  cwd=self.server.dir)
        self.assertEqual(out.returncode, 0, out.stderr + self.server.read_log())
        self.assertEqual(git("log", "-1", "--format=%s", cwd=dest).stdout.strip(), self.MESSAGE)
        self.assertEqual(git("rev-parse", "HEAD", cwd=dest).stdout.strip(), self.head)
        with open(os.path.join(dest, "README")) as f:
            self.assertEqual(f.read(), "served by git-http-backend through h2pool\n")

    def test_clone_with_protocol_v2(self):
        # protocol v2 is asked for with a Git-Protocol header: git-http-backend reads HTTP_GIT_PROTOCOL
        dest = self.server.path("clone2")
        out = git("-c", "protocol.version=2", "clone", "-q", self.server.url("/cgi-bin/git.cgi/repo.git"), dest,
                  cwd=self.server.dir, env={"GIT_TRACE_PACKET": "0"})
        self.assertEqual(out.returncode, 0, out.stderr + self.server.read_log())
        self.assertEqual(git("rev-parse", "HEAD", cwd=dest).stdout.strip(), self.head)

    def test_info_refs_advertisement(self):
        r = self.server.get("/cgi-bin/git.cgi/repo.git/info/refs?service=git-upload-pack")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "application/x-git-upload-pack-advertisement")
        self.assertIn(self.head.encode(), r.body)
        self.assertIn(b"refs/heads/main", r.body)
        r = self.server.get("/cgi-bin/git.cgi/repo.git/info/refs?service=git-upload-pack", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (200, "2"))
        self.assertIn(self.head.encode(), r.body)
        # the Git-Protocol request header reaches the program as HTTP_GIT_PROTOCOL
        r = self.server.get("/cgi-bin/git.cgi/repo.git/info/refs?service=git-upload-pack", "-H", "Git-Protocol: version=2")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"version 2\n", r.body)
        self.assertNotIn(self.head.encode(), r.body)  # v2 advertises capabilities, not refs

    def test_ls_remote(self):
        out = git("ls-remote", self.server.url("/cgi-bin/git.cgi/repo.git"), cwd=self.server.dir)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"{self.head}\trefs/heads/main", out.stdout)

    def test_unexported_and_missing_repositories_are_404(self):
        for repo in ("private.git", "nothere.git"):
            with self.subTest(repo=repo):
                r = self.server.get(f"/cgi-bin/git.cgi/{repo}/info/refs?service=git-upload-pack")
                self.assertEqual(r.status, 404, r)

    def test_push_is_refused_without_authentication(self):
        # http.receivepack defaults to on only with REMOTE_USER: anonymous pushes get 403
        r = self.server.get("/cgi-bin/git.cgi/repo.git/info/refs?service=git-receive-pack")
        self.assertEqual(r.status, 403, r)


if __name__ == "__main__":
    h2ptest.main()
