"""Static files, sent from the descriptor h2pool opened beneath the root (`sites.*.root`,
`default_documents`, `http2`): validators, conditional requests, ranges, HEAD, streaming."""
import email.utils
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


CONF = """
server:
  threads: 2
sites:
  main:
    bindings: [http://127.0.0.1:{port:http}:main.test]
    root: {dir}/www
    http2: true
  ordered:
    bindings: [http://127.0.0.1:{port:http}:order.test]
    root: {dir}/ordered
    default_documents: [second.html, index.html]
    http2: false
  only_default_htm:
    bindings: [http://127.0.0.1:{port:http}:nodoc.test]
    root: {dir}/nodoc
    default_documents: [default.htm]
  listing:
    bindings: [http://127.0.0.1:{port:http}:listing.test]
    root: {dir}/listing
    directory_listing: true
  deploy:
    bindings: [http://127.0.0.1:{port:http}:deploy.test]
    root: {dir}/current
  catchall:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/catchall
"""

BIN = bytes(range(256)) * 4  # 1 KiB of every byte value
# 20 MiB that no two 64 KiB chunks share: a chunk sent twice, skipped or out of order shows
BIG = b"".join(i.to_bytes(4, "big") * 16 for i in range(20 * 1024 * 1024 // 64))

# small files are read once per loop iteration and sent from memory (up to 32 KiB): both sides of the edge
SMALL = bytes((i * 7 + i // 256) % 251 for i in range(32 * 1024))
SMALL_PLUS = SMALL + b"!"

FILES = {
    "www/index.html": "main index\n",
    "www/small.bin": SMALL,
    "www/small-plus.bin": SMALL_PLUS,
    "www/hello.txt": "hello, static world\n",
    "www/style.css": "body { color: red }\n",
    "www/app.js": "console.log(1);\n",
    "www/data.json": '{"a": 1}\n',
    "www/image.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 56,
    "www/blob.bin": BIN,
    "www/dir/index.html": "dir index\n",
    "www/dir/page.html": "<p>page</p>\n",
    "www/only_txt/index.txt": "libh2o's own index file, not a default document\n",
    "www/empty_dir/.keep": "",
    "www/empty.txt": "",
    "www/big.bin": BIG,
    "ordered/index.html": "index.html (second in the list)\n",
    "ordered/second.html": "second.html (first in the list)\n",
    "ordered/sub/index.html": "sub index.html\n",
    "nodoc/index.html": "index.html is not a default document here\n",
    "nodoc/default.htm": "default.htm at the root\n",
    "nodoc/sub/index.html": "index.html, unlisted\n",
    "listing/files/listed-file.txt": "x\n",
    "catchall/index.html": "catch-all site\n",
    "release1/version.txt": "release1\n",
    "release2/version.txt": "release2\n",
    "release2/new.txt": "new in release2\n",
}


class StaticTest(h2ptest.ServerTestCase):
    CONF, FILES, HOST = CONF, FILES, "main.test"

    @classmethod
    def prepare(cls, server):
        os.mkfifo(server.path("www/fifo.txt"))  # opening it for reading would block without O_NONBLOCK
        os.symlink("release1", server.path("current"))  # `root: .../current`, switched by deploys
        for release in ("release1", "release2"):
            os.symlink(server.path(release + "/version.txt"), server.path(release + "/abs.txt"))
            os.symlink(server.path("www/hello.txt"), server.path(release + "/out.txt"))

    def raw(self, request):
        """One raw HTTP/1.1 exchange on a fresh connection; returns (status, headers, body)."""
        out = raw_request(self.server.port(), request)
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
        status = int(m.group(1)) if m else 0
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.decode().strip().lower()] = v.decode("latin-1").strip()
        return status, headers, body

    # ---- 200, content types, validators --------------------------------------------------

    def test_get_file_with_body(self):
        r = self.get("/hello.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello, static world\n")
        self.assertEqual(r.header("content-length"), str(len(r.body)))

    def test_binary_file_is_byte_exact(self):
        r = self.get("/blob.bin")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, BIN)

    def test_content_type_by_extension(self):
        expected = {
            "/hello.txt": "text/plain",
            "/style.css": "text/css",
            "/app.js": "application/javascript",
            "/data.json": "application/json",
            "/image.png": "image/png",
            "/dir/page.html": "text/html",
        }
        for path, mime in expected.items():
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("content-type").split(";")[0].strip(), mime)

    def test_etag_and_last_modified(self):
        r = self.get("/hello.txt")
        self.assertEqual(r.status, 200, r)
        self.assertRegex(r.header("etag") or "", r'^(W/)?"[^"]+"$')
        self.assertRegex(r.header("last-modified") or "", r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$")

    def test_if_none_match_gives_304(self):
        etag = self.get("/hello.txt").header("etag")
        r = self.get("/hello.txt", "-H", f"If-None-Match: {etag}")
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.body, b"")
        r = self.get("/hello.txt", "-H", 'If-None-Match: "not-the-etag"')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello, static world\n")

    def test_if_modified_since_gives_304(self):
        lm = self.get("/hello.txt").header("last-modified")
        r = self.get("/hello.txt", "-H", f"If-Modified-Since: {lm}")
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.body, b"")
        r = self.get("/hello.txt", "-H", "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT")
        self.assertEqual(r.status, 200, r)

    # ---- ranges --------------------------------------------------------------------------

    def test_range_gives_206(self):
        r = self.get("/hello.txt", "-H", "Range: bytes=0-3")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, b"hell")
        self.assertEqual(r.header("content-range"), "bytes 0-3/20")
        r = self.get("/blob.bin", "-H", "Range: bytes=-4")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, BIN[-4:])
        self.assertEqual(r.header("content-range"), f"bytes {len(BIN) - 4}-{len(BIN) - 1}/{len(BIN)}")

    def test_unsatisfiable_range_gives_416(self):
        r = self.get("/hello.txt", "-H", "Range: bytes=100-200")
        self.assertEqual(r.status, 416, r)
        self.assertEqual(r.header("content-range"), "bytes */20")

    def test_validators_are_libh2o_s(self):
        """Caches and clients kept ETags and dates from libh2o's file handler: same format."""
        st = os.stat(self.server.path("www/hello.txt"))
        r = self.get("/hello.txt")
        self.assertEqual(r.header("etag"), '"%08x-%x"' % (int(st.st_mtime), st.st_size))
        self.assertEqual(r.header("last-modified"), email.utils.formatdate(int(st.st_mtime), usegmt=True))
        self.assertEqual(r.header("accept-ranges"), "bytes")

    def test_if_none_match_lists_and_weak_tags(self):
        etag = self.get("/hello.txt").header("etag")
        for value in (etag, "W/" + etag, f'"other", {etag}', "*", f'W/"x", W/{etag}'):
            with self.subTest(value=value):
                r = self.get("/hello.txt", "-H", f"If-None-Match: {value}")
                self.assertEqual((r.status, r.body), (304, b""), r)
                self.assertEqual(r.header("etag"), etag)
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3)
        lm = self.get("/hello.txt").header("last-modified")
        r = self.get("/hello.txt", "-H", 'If-None-Match: "other"', "-H", f"If-Modified-Since: {lm}")
        self.assertEqual(r.status, 200, r)

    def test_range_forms(self):
        text = b"hello, static world\n"
        for value, status, body, content_range in (
                ("bytes=5-", 206, text[5:], "bytes 5-19/20"),
                ("bytes=10-1000", 206, text[10:], "bytes 10-19/20"),
                ("bytes=-100", 206, text, "bytes 0-19/20"),
                ("bytes=19-19", 206, text[19:], "bytes 19-19/20"),
                ("bytes=0-0, 30-40", 206, text[:1], "bytes 0-0/20"),  # one satisfiable range
                ("bytes=0-1, 4-5", 200, text, None),  # several: the whole file
                ("bytes=abc", 200, text, None),  # malformed: ignored
                ("bytes=5-2", 200, text, None),
                ("items=0-1", 200, text, None)):
            with self.subTest(range=value):
                r = self.get("/hello.txt", "-H", f"Range: {value}")
                self.assertEqual((r.status, r.body), (status, body), r)
                self.assertEqual(r.header("content-range"), content_range)
                self.assertEqual(r.header("content-length"), str(len(body)))
        for value in ("bytes=20-", "bytes=-0", "bytes=100-200, 300-"):
            with self.subTest(range=value):
                r = self.get("/hello.txt", "-H", f"Range: {value}")
                self.assertEqual(r.status, 416, r)
                self.assertEqual(r.header("content-range"), "bytes */20")
        r = self.get("/empty.txt", "-H", "Range: bytes=0-")
        self.assertEqual((r.status, r.header("content-range")), (416, "bytes */0"))

    def test_if_range(self):
        first = self.get("/hello.txt")
        etag, lm = first.header("etag"), first.header("last-modified")
        for validator, status in ((etag, 206), (lm, 206), ('"stale"', 200), ("W/" + etag, 200),
                                  ("Thu, 01 Jan 1970 00:00:01 GMT", 200)):
            with self.subTest(validator=validator):
                r = self.get("/hello.txt", "-H", "Range: bytes=0-3", "-H", f"If-Range: {validator}")
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.body, b"hell" if status == 206 else b"hello, static world\n")

    def test_head_with_range_and_over_h2(self):
        status, headers, body = self.raw(b"HEAD /hello.txt HTTP/1.1\r\nHost: main.test\r\nRange: bytes=2-5\r\n"
                                         b"Connection: close\r\n\r\n")
        self.assertEqual((status, headers.get("content-range"), headers.get("content-length"), body),
                         (206, "bytes 2-5/20", "4", b""))
        r = self.get("/big.bin", "-X", "HEAD", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version, r.body), (200, "2", b""), r)
        self.assertEqual(r.header("content-length"), str(len(BIG)))

    def test_big_file_streams_byte_for_byte(self):
        for proto in ([], ["--http2-prior-knowledge"], ["--http1.0"]):
            with self.subTest(proto=proto):
                r = self.get("/big.bin", *proto)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("content-length"), str(len(BIG)))
                self.assertTrue(r.body == BIG, f"{len(r.body)} bytes differ from the file")
        # a range across several read chunks, from the middle
        start, end = 65000 * 3 - 7, 65000 * 9 + 11
        r = self.get("/big.bin", "-H", f"Range: bytes={start}-{end}")
        self.assertEqual(r.status, 206, r)
        self.assertTrue(r.body == BIG[start:end + 1])

    def open_descriptors_of(self, name):
        pid = self.server.proc.pid  # the front end: it opens static files
        found = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                found += os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + name)
            except OSError:
                pass  # closed meanwhile
        return found

    def test_descriptor_closes_when_the_client_leaves(self):
        for request in (b"GET /big.bin HTTP/1.1\r\nHost: main.test\r\n\r\n",
                        b"GET /big.bin HTTP/1.1\r\nHost: main.test\r\nRange: bytes=100-\r\n\r\n"):
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", self.server.port()), timeout=10) as s:
                    s.sendall(request)
                    self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 20"))
        h2ptest.wait_until(lambda: self.open_descriptors_of("big.bin") == 0, what="big.bin's descriptors to close")
        r = self.get("/big.bin", "-H", "Range: bytes=0-9")
        self.assertEqual((r.status, r.body), (206, BIG[:10]))

    def test_empty_file(self):
        r = self.get("/empty.txt")
        self.assertEqual((r.status, r.body, r.header("content-length")), (200, b"", "0"), r)

    def test_changed_file_is_served_at_once(self):
        path = self.server.path("www/changing.txt")
        for i, content in enumerate((b"first\n", b"second version\n", b"3\n")):
            with open(path + ".tmp", "wb") as f:
                f.write(content)
            os.utime(path + ".tmp", (1000000000 + i, 1000000000 + i))
            os.rename(path + ".tmp", path)
            r = self.get("/changing.txt")
            self.assertEqual((r.status, r.body), (200, content), r)

    def test_small_files_shared_by_concurrent_streams(self):
        """Streams of one HTTP/2 connection, answered in the same loop iterations, share one read
        of a small file: each gets its own file's bytes, whole or the range it asked for."""
        asked = []
        for _ in range(3):
            for name, content in (("small.bin", SMALL), ("small-plus.bin", SMALL_PLUS), ("blob.bin", BIN),
                                  ("hello.txt", b"hello, static world\n")):
                third = len(content) // 3
                for rng, want in ((None, content), (f"{third}-{2 * third}", content[third:2 * third + 1]), ("-5", content[-5:]),
                                  (f"{len(content) - 3}-", content[-3:])):
                    asked.append((name, rng, want))
        with tempfile.TemporaryDirectory() as out:
            args = ["curl", "-s", "--parallel", "--parallel-max", "50", "--http2-prior-knowledge", "--max-time", "30"]
            for i, (name, rng, _) in enumerate(asked):
                if i:
                    args.append("--next")
                args += ["--resolve", f"main.test:{self.server.port()}:127.0.0.1", "-o", f"{out}/{i}"]
                args += ["-r", rng] if rng else []
                args.append(f"http://main.test:{self.server.port()}/{name}")
            subprocess.run(args, check=True, timeout=60)
            for i, (name, rng, want) in enumerate(asked):
                with self.subTest(name=name, range=rng), open(f"{out}/{i}", "rb") as f:
                    self.assertTrue(f.read() == want, f"{name} {rng}: wrong bytes")

    def test_small_file_rewritten_in_place(self):
        """The same inode rewritten (truncated, then shorter or longer): the next request has
        the new bytes, not those a previous request read."""
        path = self.server.path("www/inplace.bin")
        for i, content in enumerate((SMALL, b"short\n", SMALL_PLUS[:20000], SMALL[::-1])):
            with open(path, "r+b" if i else "wb") as f:
                f.truncate(0)
                f.write(content)
            os.utime(path, (1000000000 + i, 1000000000 + i))
            for proto in ([], ["--http2-prior-knowledge"]):
                r = self.get("/inplace.bin", *proto)
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == content, f"version {i}: {len(r.body)} bytes, not the file's {len(content)}")

    def test_root_switched_by_a_deploy(self):
        """A root that is a symlink a deploy switches: the next request is served from the new
        release, symlinks judged against it."""
        for release, new in (("release2", 200), ("release1", 404), ("release2", 200)):
            with self.subTest(release=release):
                os.symlink(release, self.server.path("current.new"))
                os.rename(self.server.path("current.new"), self.server.path("current"))
                r = self.get("/version.txt", host="deploy.test")
                self.assertEqual((r.status, r.body), (200, f"{release}\n".encode()), r)
                self.assertEqual(self.get("/new.txt", host="deploy.test").status, new)
                r = self.get("/abs.txt", host="deploy.test")  # an absolute symlink inside the release
                self.assertEqual((r.status, r.body), (200, f"{release}\n".encode()), r)
                r = self.get("/out.txt", host="deploy.test")  # out of the release
                self.assertEqual(r.status, 403, r)
                self.assertNotIn(b"hello, static world", r.body)

    def test_fifo_is_not_a_file(self):
        for path in ("/fifo.txt", "/fifo.txt/"):
            with self.subTest(path=path):
                r = self.get(path, timeout=10)
                self.assertEqual(r.status, 404, r)
        self.assertEqual(self.get("/hello.txt").status, 200)

    # ---- HEAD, methods -------------------------------------------------------------------

    def test_head_has_no_body(self):
        status, headers, body = self.raw(b"HEAD /hello.txt HTTP/1.1\r\nHost: main.test\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-length"), "20")
        self.assertEqual(body, b"")

    def test_post_to_static_file_gives_405(self):
        r = self.get("/hello.txt", "-X", "POST", "--data-binary", "x=1")
        self.assertEqual(r.status, 405, r)
        self.assertNotIn(b"hello, static world", r.body)
        self.assertIn("GET", r.header("allow") or "")

    # ---- directories and default documents -----------------------------------------------

    def test_directory_without_slash_redirects(self):
        r = self.get("/dir")
        self.assertEqual(r.status, 301, r)
        self.assertTrue(r.header("location").endswith("/dir/"), r.header("location"))
        r = self.get("/dir?x=1")
        self.assertEqual(r.status, 301, r)
        self.assertTrue(r.header("location").endswith("/dir/?x=1"), r.header("location"))

    def test_default_document_for_directory(self):
        r = self.get("/dir/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"dir index\n")
        self.assertEqual(r.header("content-type").split(";")[0], "text/html")
        r = self.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"main index\n")

    def test_default_documents_order_is_honoured(self):
        r = self.get("/", host="order.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"second.html (first in the list)\n")
        r = self.get("/sub/", host="order.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"sub index.html\n")

    def test_only_listed_default_documents_are_used(self):
        # default_documents: [default.htm] -> index.html is an ordinary file, not a default document
        r = self.get("/", host="nodoc.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"default.htm at the root\n")
        r = self.get("/index.html", host="nodoc.test")
        self.assertEqual(r.status, 200, r)
        r = self.get("/sub/", host="nodoc.test")
        self.assertEqual(r.status, 403, r)
        self.assertNotIn(b"unlisted", r.body)
        # the default list (index.php, index.html, index.htm, default.htm) has no index.txt
        r = self.get("/only_txt/")
        self.assertEqual(r.status, 403, r)
        self.assertNotIn(b"libh2o's own index file", r.body)

    def test_directory_without_default_document_is_not_listed(self):
        r = self.get("/empty_dir/")
        self.assertEqual(r.status, 403, r)  # IIS 403.14: directory listing denied
        self.assertNotIn(b".keep", r.body)

    def test_directory_listing_when_enabled(self):
        r = self.get("/files/", host="listing.test")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"listed-file.txt", r.body)

    def test_missing_file_gives_404(self):
        for path in ("/nope.html", "/dir/nope", "/nope/", "/hello.txt/extra"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 404, r)

    # ---- HTTP versions -------------------------------------------------------------------

    def test_http10_without_host_goes_to_catch_all(self):
        status, headers, body = self.raw(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"catch-all site\n")

    def test_http11_keepalive_serves_several_requests(self):
        req = b"GET /hello.txt HTTP/1.1\r\nHost: main.test\r\n\r\n"
        out = raw_request(self.server.port(), req + req + req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        self.assertEqual(out.count(b"HTTP/1.1 200"), 3, out)
        self.assertEqual(out.count(b"hello, static world\n"), 3)

    def test_h2c_prior_knowledge(self):
        r = self.get("/hello.txt", "--http2-prior-knowledge")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.version, "2")
        self.assertEqual(r.body, b"hello, static world\n")
        r = self.get("/dir/", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.body), (200, b"dir index\n"))

    def test_h2c_prior_knowledge_is_per_listener(self):
        """libh2o 2.2.5 detects the h2 connection preface before any request (so before Host is
        known) and only per server (globalconf.http1.upgrade_to_http2): `http2: false` cannot
        refuse prior-knowledge h2c for one site of a cleartext listener.  Documented behaviour:
        the request is served over h2 all the same; `http2: false` is honoured for ALPN on https
        (see test_tls)."""
        r = self.get("/", "--http2-prior-knowledge", host="order.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"second.html (first in the list)\n")


if __name__ == "__main__":
    h2ptest.main()
