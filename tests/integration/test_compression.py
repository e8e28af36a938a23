"""compression module (`modules.compression`): gzip and brotli, chosen by Accept-Encoding
with q-values, for static files (on the fly, or a precompressed `.br` / `.gz` sibling, then from
the compressed copy kept in memory) and worker output; never for Range answers, encoded bodies,
HEAD, 304, small bodies or unlisted types."""
import gzip
import os
import subprocess
import time
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request

CONF = """
server:
  threads: 2
pools:
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 2
    {worker_user}
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: {dir}/www
    http2: true
    handlers:
      - {path: "*.php", pool: php}
    modules:
      compression: {dynamic: true, static: true, types: [text/*, application/json], min_size: 256}
    locations:
      /off:
        modules:
          compression: {enabled: false}
      /staticonly:
        modules:
          compression: {dynamic: false, static: true, types: [text/*], min_size: 256}
"""

BIG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(2000))
DYN = "".join(f"dynamic {i}: lorem ipsum dolor sit amet\n" for i in range(1500))
PRE = "body { color: red; }\n" * 500

FILES = {
    "www/big.txt": BIG,
    "www/small.txt": "tiny\n" * 10,
    "www/big.bin": BIG,  # application/octet-stream: not listed
    "www/data.json": '{"k": "' + "v" * 5000 + '"}',
    "www/pre.css": PRE,
    "www/stale.css": PRE,
    "www/off/big.txt": BIG,
    "www/staticonly/big.txt": BIG,
    "www/staticonly/dyn.php": "<?php header('Content-Type: text/plain'); echo str_repeat(\"dynamic text line\\n\", 1000);\n",
    "www/dyn.php": "<?php header('Content-Type: text/plain'); header('ETag: \"v1\"');"
                   " for ($i = 0; $i < 1500; $i++) echo \"dynamic $i: lorem ipsum dolor sit amet\\n\";\n",
    "www/stream.php": "<?php header('Content-Type: text/html'); for ($i = 0; $i < 1500; $i++) {"
                      " echo \"dynamic $i: lorem ipsum dolor sit amet\\n\"; if ($i % 300 == 0) { flush(); usleep(20000); } }\n",
    "www/small.php": "<?php header('Content-Type: text/plain'); echo 'short';\n",
    "www/image.php": "<?php header('Content-Type: image/png'); echo str_repeat('x', 5000);\n",
    "www/json.php": "<?php header('Content-Type: application/json; charset=utf-8'); echo json_encode(array_fill(0, 500, 'value'));\n",
    "www/encoded.php": "<?php header('Content-Type: text/plain'); header('Content-Encoding: gzip');"
                       " echo gzencode(str_repeat(\"already gzipped by the app\\n\", 300));\n",
    "www/notransform.php": "<?php header('Content-Type: text/plain'); header('Cache-Control: no-transform');"
                           " echo str_repeat(\"keep me as I am\\n\", 300);\n",
    "www/vary.php": "<?php header('Content-Type: text/plain'); header('Vary: Accept-Language');"
                    " echo str_repeat(\"varies by language\\n\", 300);\n",
}


def br_compress(data):
    return subprocess.run(["brotli", "-c"], input=data, capture_output=True, check=True).stdout


def br_decompress(data):
    return subprocess.run(["brotli", "-d", "-c"], input=data, capture_output=True, check=True).stdout


def decode(r):
    coding = r.header("content-encoding")
    if coding == "gzip":
        return gzip.decompress(r.body)
    if coding == "br":
        return br_decompress(r.body)
    assert coding is None, coding
    return r.body


PROTOCOLS = [("http/1.1", []), ("h2", ["--http2-prior-knowledge"])]


class CompressionTest(h2ptest.ServerTestCase):
    CONF, FILES = CONF, FILES

    @classmethod
    def prepare(cls, s):
        # precompressed siblings: their content differs from the file's so the test can tell which was sent
        s.write("www/pre.css.gz", gzip.compress(b"precompressed gzip sibling\n"))
        s.write("www/pre.css.br", br_compress(b"precompressed brotli sibling\n"))
        s.write("www/stale.css.gz", gzip.compress(b"an old sibling\n"))
        old = time.time() - 3600
        os.utime(s.path("www/stale.css.gz"), (old, old))

    def get(self, path, *args, encoding=None):
        extra = ["-H", f"Accept-Encoding: {encoding}"] if encoding is not None else []
        return self.server.get(path, *extra, *args)

    def assertCompressed(self, r, coding, original):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-encoding"), coding, r)
        self.assertIn("accept-encoding", (r.header("vary") or "").lower(), r)
        # streamed as compressed (no length), or a static file's kept copy (its length)
        self.assertIn(r.header("content-length"), [None, str(len(r.body))], r)
        self.assertEqual(decode(r), original.encode() if isinstance(original, str) else original)
        self.assertLess(len(r.body), len(decode(r)))

    def assertIdentity(self, r, original, status=200):
        self.assertEqual(r.status, status, r)
        self.assertIsNone(r.header("content-encoding"), r)
        self.assertEqual(r.body, original.encode() if isinstance(original, str) else original)

    # ---- codings and protocols

    def test_static_gzip_and_brotli(self):
        for name, proto in PROTOCOLS:
            for coding in ["gzip", "br"]:
                with self.subTest(proto=name, coding=coding):
                    r = self.get("/big.txt", *proto, encoding=coding)
                    self.assertCompressed(r, coding, BIG)
                    self.assertTrue(r.header("etag").startswith('W/"'), r)  # another byte sequence: weak
                    self.assertEqual(r.header("accept-ranges"), "none", r)

    def test_dynamic_gzip_and_brotli(self):
        for name, proto in PROTOCOLS:
            for coding in ["gzip", "br"]:
                for path in ["/dyn.php", "/stream.php"]:
                    with self.subTest(proto=name, coding=coding, path=path):
                        r = self.get(path, *proto, encoding=coding)
                        self.assertCompressed(r, coding, DYN)
                        if path == "/dyn.php":
                            self.assertEqual(r.header("etag"), 'W/"v1"', r)

    def test_json_is_listed(self):
        for path in ["/data.json", "/json.php"]:
            with self.subTest(path=path):
                r = self.get(path, encoding="gzip")
                self.assertEqual(r.header("content-encoding"), "gzip", r)
                self.assertIn(b"value" if path == "/json.php" else b"vvvv", decode(r))

    def test_without_accept_encoding_identity_with_vary(self):
        for path, original in [("/big.txt", BIG), ("/dyn.php", DYN)]:
            with self.subTest(path=path):
                r = self.get(path)
                self.assertIdentity(r, original)
                self.assertIn("accept-encoding", (r.header("vary") or "").lower(), r)

    def test_weak_etag_revalidates(self):
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                etag = self.get("/big.txt", *proto, encoding="gzip").header("etag")
                self.assertTrue(etag.startswith('W/"'), etag)
                r = self.get("/big.txt", "-H", f"If-None-Match: {etag}", *proto, encoding="gzip")
                self.assertEqual(r.status, 304, r)

    # ---- Accept-Encoding negotiation

    def test_q_values(self):
        cases = {
            "gzip;q=0": None,
            "gzip;q=0, br;q=0": None,
            "GZIP; Q=0.000, br;q=0": None,
            "br;q=0, gzip": "gzip",
            "gzip;q=0, br": "br",
            "gzip;q=0.5, br;q=0.8": "br",
            "gzip;q=0.9, br;q=0.8": "gzip",
            "gzip, deflate, br": "br",
            "x-gzip": "gzip",
            "*": "br",
            "*;q=0": None,
            "br;q=0, *": "gzip",
            "identity;q=1, gzip;q=0.5": None,
            "identity;q=0, gzip;q=0.5": "gzip",
            "deflate, compress": None,
            "gzip;q=bogus": None,
            "": None,
        }
        for header, coding in cases.items():
            for path, original in [("/big.txt", BIG), ("/dyn.php", DYN)]:
                with self.subTest(accept_encoding=header, path=path):
                    r = self.get(path, encoding=header)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("content-encoding"), coding, r)
                    self.assertEqual(decode(r), original.encode())

    # ---- what is never compressed

    def test_range_answer_is_never_compressed(self):
        for name, proto in PROTOCOLS:
            with self.subTest(proto=name):
                r = self.get("/big.txt", "-H", "Range: bytes=0-99", *proto, encoding="gzip, br")
                self.assertIdentity(r, BIG[:100], status=206)
                self.assertIsNotNone(r.header("content-range"), r)

    def test_encoded_body_is_not_compressed_again(self):
        expected = ("already gzipped by the app\n" * 300).encode()
        for coding in ["gzip", "br", "gzip, br"]:
            with self.subTest(coding=coding):
                r = self.get("/encoded.php", encoding=coding)
                self.assertEqual(r.header("content-encoding"), "gzip", r)
                self.assertEqual(gzip.decompress(r.body), expected)

    def test_no_transform_is_honoured(self):
        r = self.get("/notransform.php", encoding="gzip")
        self.assertIdentity(r, "keep me as I am\n" * 300)

    def test_head_and_304_are_not_compressed(self):
        for path in ["/big.txt", "/dyn.php"]:
            with self.subTest(path=path):
                r = self.get(path, "-I", encoding="gzip")
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("content-encoding"), r)  # (curl -I prints the head as the body)
        etag = self.get("/big.txt").header("etag")
        r = self.get("/big.txt", "-H", f"If-None-Match: {etag}", encoding="gzip")
        self.assertEqual(r.status, 304, r)
        self.assertIsNone(r.header("content-encoding"), r)
        self.assertEqual(r.body, b"")

    def test_min_size(self):
        r = self.get("/small.txt", encoding="gzip")
        self.assertIdentity(r, "tiny\n" * 10)
        r = self.get("/small.php", encoding="gzip")
        self.assertIdentity(r, "short")

    def test_unlisted_types(self):
        r = self.get("/big.bin", encoding="gzip")
        self.assertIdentity(r, BIG)
        self.assertNotIn("accept-encoding", (r.header("vary") or "").lower(), r)
        r = self.get("/image.php", encoding="gzip")
        self.assertIdentity(r, "x" * 5000)

    def test_existing_vary_is_kept(self):
        r = self.get("/vary.php", encoding="gzip")
        self.assertEqual(r.header("content-encoding"), "gzip", r)
        vary = [v.strip().lower() for v in r.header("vary").split(",")]
        self.assertEqual(sorted(vary), ["accept-encoding", "accept-language"], r)

    def test_http10_is_not_compressed(self):
        out = raw_request(self.server.port(),
                          b"GET /big.txt HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertNotIn(b"content-encoding", head.lower())
        self.assertEqual(body, BIG.encode())

    # ---- settings per scope

    def test_disabled_scope(self):
        r = self.get("/off/big.txt", encoding="gzip")
        self.assertIdentity(r, BIG)

    def test_dynamic_off_static_on(self):
        r = self.get("/staticonly/big.txt", encoding="gzip")
        self.assertEqual(r.header("content-encoding"), "gzip", r)
        r = self.get("/staticonly/dyn.php", encoding="gzip")
        self.assertIdentity(r, "dynamic text line\n" * 1000)

    # ---- precompressed siblings

    def test_precompressed_siblings(self):
        for name, proto in PROTOCOLS:
            for accept, coding, body in [("gzip", "gzip", b"precompressed gzip sibling\n"),
                                         ("br", "br", b"precompressed brotli sibling\n"),
                                         ("gzip, br", "br", b"precompressed brotli sibling\n"),
                                         ("br;q=0, gzip", "gzip", b"precompressed gzip sibling\n"),
                                         ("gzip;q=0.9, br;q=0.5", "gzip", b"precompressed gzip sibling\n")]:
                with self.subTest(proto=name, accept=accept):
                    r = self.get("/pre.css", *proto, encoding=accept)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("content-encoding"), coding, r)
                    self.assertTrue(r.header("content-type").startswith("text/css"), r)
                    self.assertIn("accept-encoding", (r.header("vary") or "").lower(), r)
                    self.assertEqual(decode(r), body)
        # identity when the client takes neither
        self.assertIdentity(self.get("/pre.css", encoding="gzip;q=0"), PRE)
        self.assertIdentity(self.get("/pre.css"), PRE)
        # HEAD and 304 of the sibling
        r = self.get("/pre.css", "-I", encoding="gzip")
        self.assertEqual(r.header("content-encoding"), "gzip", r)
        etag = r.header("etag")
        r = self.get("/pre.css", "-H", f"If-None-Match: {etag}", encoding="gzip")
        self.assertEqual(r.status, 304, r)

    def test_stale_sibling_is_ignored(self):
        r = self.get("/stale.css", encoding="gzip")
        self.assertCompressed(r, "gzip", PRE)  # compressed on the fly from the current file


KEPT_CONF = """
server:
  threads: 2
  cache: {max_entry: 16KiB}
sites:
  open:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: {dir}/www
    http2: true
  locked:
    bindings: ["http://127.0.0.1:{port:locked}"]
    root: {dir}/www
    modules:
      ip_restriction: {default: deny}
"""

TEXT = "".join(f"kept {i}: the quick brown fox jumps over the lazy dog\n" for i in range(3000))
# text that compresses to more than max_entry (16 KiB): never kept
NOISE = "".join(f"{(i * 2654435761) % 4294967296:08x}{(i * 40503) % 65536:04x}\n" for i in range(4000))


class KeptCopyTest(h2ptest.ServerTestCase):
    """A static file is compressed once per coding; later requests get the copy kept in memory (a
    Content-Length where the streamed one has none), for as long as the file is the same."""
    CONF = KEPT_CONF
    FILES = {"www/noise.txt": NOISE}

    def get(self, path, *args, coding="gzip", name="http"):
        return self.server.get(path, "-H", f"Accept-Encoding: {coding}", *args, name=name)

    def kept(self, path, original, coding="gzip", proto=()):
        """Asks until the copy answers, checks the first answer and the copy.  (A file changed in
        the last second or two is not kept yet: its answers are compressed as they stream.)"""
        first = self.get(path, *proto, coding=coding)
        self.assertEqual(first.status, 200, first)
        self.assertEqual(first.header("content-encoding"), coding, first)
        self.assertEqual(decode(first), original.encode())
        answers = []

        def copy_answers():
            answers.append(self.get(path, *proto, coding=coding))
            self.assertEqual(decode(answers[-1]), original.encode())
            return answers[-1].header("content-length") is not None
        h2ptest.wait_until(copy_answers, timeout=15, interval=0.2, what=f"the kept copy of {path}")
        copy = answers[-1]
        self.assertEqual(copy.status, 200, copy)
        self.assertEqual(copy.header("content-encoding"), coding, copy)
        self.assertEqual(copy.header("content-length"), str(len(copy.body)), copy)
        self.assertEqual(decode(copy), original.encode())
        self.assertIn("accept-encoding", copy.header("vary").lower(), copy)
        self.assertEqual(copy.header("accept-ranges"), "none", copy)
        self.assertTrue(copy.header("etag").startswith('W/"'), copy)
        self.assertEqual(copy.header("content-type"), "text/plain", copy)
        return first, copy

    def test_each_coding_is_kept(self):
        self.server.write("www/a.txt", TEXT)
        for coding in ["gzip", "br"]:
            with self.subTest(coding=coding):
                first, copy = self.kept("/a.txt", TEXT, coding)
                self.assertIsNone(first.header("content-length"), first)  # the first is compressed as it streams
                self.assertEqual(first.body, copy.body)  # the same bytes, kept
                self.assertEqual(first.header("etag"), copy.header("etag"))
        # over HTTP/2 too, and the identity answer is untouched
        self.kept("/a.txt", TEXT, "gzip", proto=["--http2-prior-knowledge"])
        r = self.server.get("/a.txt")
        self.assertEqual(r.body, TEXT.encode())
        self.assertIsNone(r.header("content-encoding"), r)

    def test_copy_follows_the_file(self):
        """Every way of changing the file is seen at once: the copy is of the file it was made of."""
        def same_size_other_text(n):
            return TEXT.replace("quick", f"qu{n:03d}")[:len(TEXT)]
        path = "www/changes.txt"
        self.server.write(path, TEXT)
        self.kept("/changes.txt", TEXT)
        st = os.stat(self.server.path(path))
        # a different size
        longer = TEXT + "one more line\n"
        self.server.write(path, longer)
        self.kept("/changes.txt", longer)
        # the same size, another mtime
        self.server.write(path, TEXT)
        self.kept("/changes.txt", TEXT)
        text = same_size_other_text(1)
        self.server.write(path, text)
        os.utime(self.server.path(path), ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        self.kept("/changes.txt", text)
        # another file renamed over it with the same size and mtime: another inode
        mtime = os.stat(self.server.path(path)).st_mtime_ns
        text = same_size_other_text(2)
        self.server.write("www/changes.new", text)
        os.utime(self.server.path("www/changes.new"), ns=(mtime, mtime))
        os.rename(self.server.path("www/changes.new"), self.server.path(path))
        self.kept("/changes.txt", text)
        # a symlink out of the root in its place: refused, the copy is never an answer
        self.server.write("secret.txt", TEXT)
        os.unlink(self.server.path(path))
        os.symlink(self.server.path("secret.txt"), self.server.path(path))
        for coding in ["gzip", "br"]:
            self.assertEqual(self.get("/changes.txt", coding=coding).status, 403)
        # gone
        os.unlink(self.server.path(path))
        for coding in ["gzip", "br"]:
            self.assertEqual(self.get("/changes.txt", coding=coding).status, 404)

    def test_access_checks_come_first(self):
        """The copy answers only a request that reached the file: the same file through a site
        that refuses the client is refused."""
        self.server.write("www/shared.txt", TEXT)
        self.kept("/shared.txt", TEXT)
        for coding in ["gzip", "br", "gzip, br"]:
            with self.subTest(coding=coding):
                r = self.get("/shared.txt", coding=coding, name="locked")
                self.assertEqual(r.status, 403, r)
                self.assertNotIn(b"kept 1", r.body)

    def test_conditional_head_and_range_on_a_kept_file(self):
        self.server.write("www/cond.txt", TEXT)
        _, copy = self.kept("/cond.txt", TEXT)
        r = self.get("/cond.txt", "-H", f"If-None-Match: {copy.header('etag')}")
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.body, b"")
        r = self.get("/cond.txt", "-I")
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("content-encoding"), r)
        r = self.get("/cond.txt", "-H", "Range: bytes=10-19")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, TEXT.encode()[10:20])
        r = self.get("/cond.txt", "--http1.0")
        self.assertEqual(r.body, TEXT.encode())
        self.assertIsNone(r.header("content-encoding"), r)

    def test_larger_than_max_entry_is_not_kept(self):
        for coding in ["gzip", "br"]:
            for _ in range(3):
                r = self.get("/noise.txt", coding=coding)
                self.assertEqual(r.header("content-encoding"), coding, r)
                self.assertIsNone(r.header("content-length"), r)  # streamed every time
                self.assertEqual(decode(r), NOISE.encode())


if __name__ == "__main__":
    h2ptest.main()
