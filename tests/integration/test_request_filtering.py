"""request_filtering (IIS request filtering): verbs, file extensions, hidden segments, denied
sequences, URL / query / header lengths, double escaping and high-bit bytes, each over HTTP/1.1
and HTTP/2 (prior knowledge); and encodings of the request target that must neither reach a file
outside the root nor get past a deny rule.

A refusal is a 404 whose sub-status only the log sees, so a test checks the status and that the
content was not served; the same file served by a site with the module off shows that it is the
filter that refused it.
"""
import socket
import struct
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request

SECRET = b"OUTSIDE-SECRET-4711"
INI = b"INI-SECRET-0815"
GIT = b"GIT-SECRET-2342"

LONG_OK = "l" * 150 + ".txt"  # path of 155 bytes: under max_url 200
LONG_DENIED = "m" * 230 + ".txt"  # path of 235 bytes: over it

CONF = """
server:
  threads: 2
sites:
  main:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    http2: true
    default_documents: [index.html]
    modules:
      request_filtering:
        verbs: {deny: [TRACE, DELETE]}
        file_extensions: {deny: [.ini, .bak, .config]}
        hidden_segments: [.git, bin, App_Data]
        deny_sequences: [/private-, "<script"]
        max_url: 200
        max_query_string: 50
        max_header_size: 1024
    locations:
      /open: {modules: {request_filtering: {enabled: false}}}
      /txtonly: {modules: {request_filtering: {file_extensions: {deny: [.txt]}}}}
  verbs:
    bindings: [http://127.0.0.1:{port:http}:verbs.test]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {verbs: {allow: [GET, HEAD]}}
  allowlist:
    bindings: [http://127.0.0.1:{port:http}:allow.test]
    root: {dir}/www
    http2: true
    default_documents: [index.html]
    modules:
      request_filtering: {file_extensions: {allow: [.html, .txt]}}
  strict:
    bindings: [http://127.0.0.1:{port:http}:strict.test]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {allow_high_bit: false}
  lenient:
    bindings: [http://127.0.0.1:{port:http}:lenient.test]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {allow_double_escaping: true, max_url: 100000}
  off:
    bindings: [http://127.0.0.1:{port:http}:off.test]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {enabled: false}
  defaults:
    bindings: [http://127.0.0.1:{port:http}:defaults.test]
    root: {dir}/www
    http2: true
"""

FILES = {
    "secret": SECRET,  # next to the root
    "secret.ini": SECRET,
    "www/index.html": b"index\n",
    "www/ok.txt": b"ok\n",
    "www/bin.txt": b"not a hidden segment\n",
    "www/binary/x.txt": b"binary dir\n",
    "www/config.ini": INI,
    "www/config.ini.txt": b"a txt file\n",
    "www/web.config": INI,
    "www/page.php.bak": INI,
    "www/.git/config": GIT,
    "www/bin/tool.txt": GIT,
    "www/App_Data/db.txt": GIT,
    "www/sub/inner.txt": b"inner\n",
    "www/private-notes.txt": INI,
    "www/a%20b.txt": b"literal percent\n",
    "www/caf\u00e9.txt": b"cafe\n",
    "www/open/config.ini": b"open ini\n",
    "www/txtonly/a.txt": b"txt in txtonly\n",
    "www/txtonly/a.ini": b"ini in txtonly\n",
    "www/" + LONG_OK: b"long ok\n",
    "www/" + LONG_DENIED: b"long denied\n",
}


# ---- a minimal HTTP/2 client: curl percent-encodes some bytes, this one sends them as they are ----

def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    # literal header field without indexing, new name, no Huffman
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def h2_request(port, path, method=b"GET", authority=b"127.0.0.1", headers=(), timeout=10.0):
    """One request over h2c prior knowledge; returns (status, body); status 0 when the stream was reset."""
    block = b"".join(hpack_literal(n, v) for n, v in
                     [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path)]
                     + list(headers))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x5, 1, block))
        buf, status, body = b"", 0, b""
        while True:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                chunk = s.recv(65536)
                if not chunk:
                    return status, body
                buf += chunk
            length = int.from_bytes(buf[:3], "big")
            ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + length], buf[9 + length:]
            if ftype == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0, b""))  # SETTINGS ack
            elif ftype == 7:  # GOAWAY
                return status, body
            elif stream == 1 and ftype == 3:  # RST_STREAM
                return 0, body
            elif stream == 1 and ftype == 1:
                first = payload[0]
                if first & 0x80:
                    status = STATIC_STATUS.get(first & 0x7F, 0)
                elif first & 0x0F == 8 or first & 0x3F == 8:  # literal with the name :status (index 8)
                    status = int(payload[2:2 + (payload[1] & 0x7F)])
                if flags & 1:
                    return status, body
            elif stream == 1 and ftype == 0:
                body += payload
                if flags & 1:
                    return status, body


def h1_request(port, target, host=b"127.0.0.1", method=b"GET"):
    """(status, whole response) for a raw HTTP/1.1 request target."""
    out = raw_request(port, method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    status = int(out[9:12]) if out.startswith(b"HTTP/1.") and len(out) >= 12 else 0
    return status, out


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(CONF, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    SERVER.start()


class FilteringCase(unittest.TestCase):
    def get(self, path, host=None, h2=False, *args):
        """curl with the path as written, over HTTP/1.1 or HTTP/2 prior knowledge."""
        port = SERVER.port()
        name = host or "127.0.0.1"
        extra = ["--path-as-is"]
        if host:
            extra += ["--resolve", f"{host}:{port}:127.0.0.1"]
        if h2:
            extra.append("--http2-prior-knowledge")
        r = curl(f"http://{name}:{port}{path}", *extra, *args)
        self.assertNotEqual(r.status, 0, f"no response for {path!r}")
        self.assertEqual(r.version, "2" if h2 else "1.1")
        return r

    def each_protocol(self, path, host, args, check):
        for h2 in (False, True):
            with self.subTest(path=path[:80], host=host, h2=h2, args=[a[:40] for a in args]):
                check(self.get(path, host, h2, *args))

    def assert_served(self, path, body, host=None, *args):
        def check(r):
            self.assertEqual((r.status, r.body), (200, body))
        self.each_protocol(path, host, args, check)

    def assert_status(self, path, status, host=None, *args):
        def check(r):
            self.assertEqual(r.status, status, r)
        self.each_protocol(path, host, args, check)

    def assert_refused(self, path, host=None, *args, statuses=(404,)):
        def check(r):
            self.assertIn(r.status, statuses, r)
            for secret in (SECRET, INI, GIT):
                self.assertNotIn(secret, r.body)
        self.each_protocol(path, host, args, check)


class VerbTest(FilteringCase):
    def test_denied_verbs_are_404(self):
        for verb in ("TRACE", "DELETE", "trace", "Delete"):
            self.assert_refused("/ok.txt", None, "-X", verb)

    def test_other_verbs_pass(self):
        self.assert_served("/ok.txt", b"ok\n")
        self.assert_status("/ok.txt", 200, None, "-I")
        # not denied: the static handler answers it (405), not the filter
        self.assert_status("/ok.txt", 405, None, "-X", "PUT")

    def test_allowlist_takes_only_the_listed_verbs(self):
        self.assert_served("/ok.txt", b"ok\n", "verbs.test")
        self.assert_status("/ok.txt", 200, "verbs.test", "-I")
        for verb in ("POST", "PUT", "OPTIONS", "PROPFIND", "get"):
            self.assert_refused("/ok.txt", "verbs.test", "-X", verb)


class ExtensionTest(FilteringCase):
    def test_denied_extensions_are_404(self):
        for path in ("/config.ini", "/web.config", "/page.php.bak", "/config.INI", "/config.Ini", "/WEB.CONFIG"):
            self.assert_refused(path)

    def test_the_same_files_are_served_without_the_module(self):
        self.assert_served("/config.ini", INI, "off.test")
        self.assert_served("/page.php.bak", INI, "off.test")
        self.assert_served("/.git/config", GIT, "off.test")

    def test_only_the_last_extension_counts(self):
        self.assert_served("/config.ini.txt", b"a txt file\n")

    def test_allowlist(self):
        self.assert_served("/ok.txt", b"ok\n", "allow.test")
        self.assert_served("/index.html", b"index\n", "allow.test")
        self.assert_served("/", b"index\n", "allow.test")  # extensionless URLs pass an allowlist
        for path in ("/config.ini", "/page.php.bak", "/web.config", "/ok.txt.bak", "/ok.TXT.ini", "/config.ini."):
            self.assert_refused(path, "allow.test")

    def test_location_replaces_the_site_settings(self):
        # /open turns the module off; /txtonly names it with other settings, which replace the site's
        self.assert_served("/open/config.ini", b"open ini\n")
        self.assert_refused("/txtonly/a.txt")
        self.assert_served("/txtonly/a.ini", b"ini in txtonly\n")
        # elsewhere the site's settings still hold
        self.assert_refused("/config.ini")
        self.assert_served("/ok.txt", b"ok\n")


class HiddenSegmentTest(FilteringCase):
    def test_hidden_segments_are_404(self):
        for path in ("/.git/config", "/.GIT/config", "/.Git/config", "/bin/tool.txt", "/BIN/tool.txt", "/App_Data/db.txt",
                     "/app_data/db.txt", "/APP_DATA/db.txt", "/sub/bin/", "/.git", "/.git/"):
            self.assert_refused(path)

    def test_names_that_only_contain_a_hidden_segment_pass(self):
        self.assert_served("/bin.txt", b"not a hidden segment\n")
        self.assert_served("/binary/x.txt", b"binary dir\n")


class SequenceTest(FilteringCase):
    def test_built_in_sequences_are_404(self):
        for path in ("/sub/../ok.txt", "/sub/%2e%2e/ok.txt", "/sub/..%2fok.txt", "/sub/%2E%2E/ok.txt", "/sub%5c..%5cok.txt",
                     "/sub/..;/ok.txt", "/sub/%2e%2e;x/ok.txt"):
            self.assert_refused(path)
        # a NUL in the decoded path: the router refuses it (400) before any module runs
        for path in ("/ok.txt%00", "/ok%00.txt", "/ok.txt%00.html"):
            self.assert_refused(path, statuses=(400, 404))
        for target in (b"/sub\\inner.txt", b"/sub/..\\ok.txt"):
            with self.subTest(target=target):
                self.assertEqual(h1_request(SERVER.port(), target)[0], 404)
                self.assertEqual(h2_request(SERVER.port(), target)[0], 404)

    def test_configured_sequences_raw_escaped_and_any_case(self):
        for path in ("/private-notes.txt", "/%70rivate-notes.txt", "/PRIVATE-notes.txt", "/x%2fprivate-notes.txt",
                     "/sub/%3Cscript%3E.txt", "/sub/<SCRIPT>.txt"):
            self.assert_refused(path)
        self.assert_served("/private-notes.txt", INI, "off.test")

    def test_dots_in_the_query_are_not_a_path(self):
        self.assert_served("/ok.txt?x=../y", b"ok\n")
        self.assert_served("/ok.txt?x=%2e%2e/%2e%2e/z", b"ok\n")
        self.assert_served("/./ok.txt", b"ok\n")


class LengthTest(FilteringCase):
    def test_max_url(self):
        self.assert_served("/" + LONG_OK, b"long ok\n")
        self.assert_refused("/" + LONG_DENIED)
        self.assert_served("/" + LONG_DENIED, b"long denied\n", "off.test")

    def test_max_url_default_is_4096(self):
        self.assert_served("/ok.txt?" + "q" * 100, b"ok\n", "defaults.test")
        self.assert_refused("/" + "x/" * 2100 + "ok.txt", "defaults.test")
        # the same length under a raised limit reaches the file system (which refuses a name that long)
        self.assert_refused("/" + "x/" * 2100 + "ok.txt", "lenient.test", statuses=(403, 404))

    def test_max_query_string(self):
        self.assert_served("/ok.txt?" + "q" * 50, b"ok\n")
        self.assert_refused("/ok.txt?" + "q" * 51)

    def test_max_header_size(self):
        self.assert_served("/ok.txt", b"ok\n", None, "-H", "X-Big: " + "v" * 900)
        self.assert_refused("/ok.txt", None, "-H", "X-Big: " + "v" * 1100)
        self.assert_refused("/ok.txt", None, "-H", "Cookie: " + "c" * 1100)
        self.assert_served("/ok.txt", b"ok\n", "off.test", "-H", "X-Big: " + "v" * 1100)


class EscapingTest(FilteringCase):
    def test_double_escaping_is_404(self):
        for path in ("/a%2520b.txt", "/ok%252etxt", "/%252e%252e/secret", "/sub%252finner.txt"):
            self.assert_refused(path)

    def test_double_escaping_allowed(self):
        self.assert_served("/a%2520b.txt", b"literal percent\n", "lenient.test")

    def test_single_escaping_is_fine(self):
        self.assert_served("/%6fk.txt", b"ok\n")
        self.assert_served("/sub%2finner.txt", b"inner\n")

    def test_high_bit_refused_when_not_allowed(self):
        port = SERVER.port()
        raw = "/caf\u00e9.txt".encode()
        self.assertEqual(h1_request(port, raw, b"strict.test")[0], 404)
        self.assertEqual(h2_request(port, raw, authority=b"strict.test")[0], 404)
        # escaped, the bytes are not high-bit ones on the wire (IIS: allowHighBitCharacters is about raw bytes)
        self.assert_served("/caf%C3%A9.txt", b"cafe\n", "strict.test")
        # allowed by default
        status, out = h1_request(port, raw)
        self.assertEqual(status, 200)
        self.assertTrue(out.endswith(b"cafe\n"))
        self.assertEqual(h2_request(port, raw), (200, b"cafe\n"))


# ---- encodings of the request target: none reaches a file outside the root or gets past a deny rule ----

# targets aimed at "secret" next to the root
OUTSIDE = [
    "/../secret", "/../../secret", "/%2e%2e/secret", "/%2E%2E/secret", "/%2e%2E%2fsecret", "/..%2fsecret", "/..%2Fsecret",
    "/%252e%252e/secret", "/%252e%252e%252fsecret", "/..%255csecret", "/..%5csecret", "/..\\secret", "/%c0%ae%c0%ae/secret",
    "/..%c0%afsecret", "/%ef%bc%8e%ef%bc%8e/secret", "/..;/secret", "/%2e./secret", "/.%2e/secret", "/..%00/secret",
    "/a/../../secret", "/./../secret", "//../secret", "/.../secret", "/..../secret", "/sub/../../secret.ini",
    "/" + "../" * 100 + "secret", "/" + "%2e%2e/" * 50 + "secret", "/" + "x" * 300 + "/../../secret",
    "/%u002e%u002e/secret", "/..%u2215secret",
]

# targets aimed at www/config.ini (denied extension .ini)
INI_TRICKS = [
    "/config.ini", "/config.INI", "/Config.Ini", "/config%2eini", "/config%2Eini", "/config.%69ni", "/config.%49NI",
    "/%63onfig.ini", "/config%252eini", "/config.ini.", "/config.ini..", "/config.ini%2e", "/config.ini%20",
    "/config.ini%20.", "/config.ini%09", "/config.ini;.txt", "/config.ini;x=1", "/config.ini%3b.txt", "/config.ini%00.txt",
    "/config.ini%00", "/config.ini/", "/config.ini/.", "/./config.ini", "//config.ini", "/sub/../config.ini",
    "/sub/%2e%2e/config.ini", "/sub/..%2fconfig.ini", "/sub%2f..%2fconfig.ini", "/config.ini?x=.txt", "/config%c0%aeini",
    "/config%ef%bc%8eini", "/config.ini::$DATA", "/config.ini%5c", "/config.ini%2f", "/sub/..\\config.ini",
    "/" + "a/" * 120 + "config.ini",
]

# targets aimed at www/.git/config (hidden segment .git)
GIT_TRICKS = [
    "/.git/config", "/.GIT/config", "/.Git/CONFIG", "/%2egit/config", "/%2Egit/config", "/.g%69t/config", "/.%47IT/config",
    "/x/../.git/config", "/x/%2e%2e/.git/config", "/x/..%2f.git/config", "/./.git/config", "//.git/config",
    "/.git./config", "/.git%20/config", "/.git;/config", "/.git;x/config", "/.git%2fconfig", "/%2egit%2fconfig",
    "/%252egit/config", "/.git%00/config", "/.git\\config", "/%ef%bc%8egit/config", "/sub/../.git/config",
    "/.git/./config", "/.git//config",
]


class TraversalAndEncodingTest(FilteringCase):
    def check(self, target, secrets, must_refuse):
        port = SERVER.port()
        raw = target.encode()
        for proto in ("h1", "h2"):
            with self.subTest(target=target[:90], proto=proto):
                if proto == "h1":
                    status, out = h1_request(port, raw)
                else:
                    status, out = h2_request(port, raw)
                for secret in secrets:
                    self.assertNotIn(secret, out)
                if must_refuse:
                    self.assertNotEqual(status, 200, f"{target!r} got past the deny rule")
                if proto == "h1":
                    self.assertIn(status, (400, 403, 404), out[:200])
                else:
                    self.assertIn(status, (0, 400, 403, 404))

    def test_at_least_40_tricks(self):
        self.assertGreaterEqual(len(OUTSIDE) + len(INI_TRICKS) + len(GIT_TRICKS), 40)

    def test_nothing_outside_the_root(self):
        for target in OUTSIDE:
            self.check(target, (SECRET,), True)

    def test_denied_extension_not_bypassed(self):
        for target in INI_TRICKS:
            self.check(target, (INI,), True)

    def test_hidden_segment_not_bypassed(self):
        for target in GIT_TRICKS:
            self.check(target, (GIT,), True)

    def test_tricks_with_curl(self):
        # curl's own request building (HTTP/1.1 and h2) for the targets it can send as they are
        for target in OUTSIDE[:20] + INI_TRICKS[:30] + GIT_TRICKS[:20]:
            if "\\" in target or "#" in target:
                continue
            self.assert_refused(target, statuses=(400, 403, 404))

    def test_server_still_serves_after_the_tricks(self):
        reqs = b"".join(b"GET " + t.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n" for t in OUTSIDE + INI_TRICKS + GIT_TRICKS)
        out = raw_request(SERVER.port(), reqs + b"GET /ok.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for secret in (SECRET, INI, GIT):
            self.assertNotIn(secret, out)
        self.assertTrue(out.endswith(b"ok\n"), out[-300:])
        self.assert_served("/ok.txt", b"ok\n")


if __name__ == "__main__":
    h2ptest.main()
