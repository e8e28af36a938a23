"""Directory listing (`directory_listing`, per site and per `locations:` prefix): entries
sorted with directories first, names HTML-escaped, links percent-encoded, sizes and dates shown;
403 when listing is off and there is no default document; HEAD; HTTP/2.
"""
import calendar
import html
import os
import re
import unittest
import urllib.parse

import h2ptest
from h2ptest import Server, curl, raw_request

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


CONF = """
server:
  threads: 2
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}"]
    http2: true
    root: "{dir}/www"
    locations:
      /pub: {directory_listing: true}
      /pub/closed: {directory_listing: false}
  open:
    bindings: ["http://127.0.0.1:{port:open}"]
    http2: true
    root: "{dir}/open"
    directory_listing: true
"""

# name -> content; a name ending in "/" is a directory
PUB = {
    "zeta.txt": "z" * 1234,
    "alpha.txt": "0123456789",
    "Beta.txt": "B\n",
    "<b>&.txt": "markup in the name\n",
    "100%.txt": "percent\n",
    "a#b?.txt": "fragment and query characters\n",
    "q\"uote'.txt": "quotes\n",
    "caf\u00e9.txt": "utf-8 name\n",
    "a:b.txt": "colon: would read as a URL scheme\n",
    "empty.bin": "",
    "sub dir/": None,
    "aaa-dir/": None,
    "zdir/": None,
    "<i>dir/": None,
}
FIXED_MTIME = calendar.timegm((2001, 2, 3, 4, 5, 6))

ROW = re.compile(r'<tr><td><a href="([^"]*)">([^<]*)</a></td><td>([^<]*)</td><td>([^<]*)</td></tr>')


def rows(body):
    """[(href, name, size, date)] of a listing, HTML entities decoded, ../ left out."""
    out = []
    for href, name, size, date in ROW.findall(body.decode("utf-8")):
        href, name = html.unescape(href), html.unescape(name)
        if name != "../":
            out.append((href, name, size, date))
    return out


class DirListTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        s = cls.server = Server(CONF)
        cls.addClassCleanup(s.cleanup)
        cls.addClassCleanup(stop_cleanly, s)
        for name, content in PUB.items():
            if content is None:
                os.makedirs(s.path("www/pub/" + name))
            else:
                s.write("www/pub/" + name, content)
        s.write("www/pub/sub dir/inner.txt", "inner\n")
        s.write("www/pub/withindex/index.html", "the default document\n")
        s.write("www/pub/withindex/other.txt", "not listed\n")
        s.write("www/pub/closed/secret.txt", "location says no listing\n")
        os.makedirs(s.path("www/pub/empty"))
        for i in range(500):
            s.write(f"www/pub/many/f{i:04d}.txt", "x" * i)
        s.write("www/private/hidden.txt", "no listing by default\n")
        s.write("www/public/also.txt", "/public is not under /pub\n")
        s.write("open/top.txt", "top\n")
        s.write("open/nested/deeper.txt", "deeper\n")
        for name in PUB:
            os.utime(s.path("www/pub/" + name), (FIXED_MTIME, FIXED_MTIME))
        s.start()

    def get(self, path, *args, name="http", **kw):
        return curl(self.server.url(path, name), *args, **kw)

    def listing(self, path="/pub/", *args):
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        return r

    # ---- content ---------------------------------------------------------------------------

    def test_entries_sorted_directories_first(self):
        names = [name for _, name, _, _ in rows(self.listing().body)]
        dirs = sorted((n[:-1] for n in PUB if n.endswith("/")), key=lambda n: n.encode())
        dirs += ["closed", "empty", "many", "withindex"]
        dirs.sort(key=lambda n: n.encode())
        files = sorted((n for n in PUB if not n.endswith("/")), key=lambda n: n.encode())
        self.assertEqual(names, [d + "/" for d in dirs] + files)

    def test_parent_link_except_at_the_root(self):
        body = self.listing().text
        self.assertIn('<a href="../">../</a>', body)
        r = self.get("/", name="open")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn('href="../"', r.text)
        self.assertEqual([n for _, n, _, _ in rows(r.body)], ["nested/", "top.txt"])
        r = self.get("/nested/", name="open")
        self.assertIn('<a href="../">../</a>', r.text)
        self.assertEqual([n for _, n, _, _ in rows(r.body)], ["deeper.txt"])

    def test_names_are_html_escaped(self):
        body = self.listing().text
        self.assertIn(">&lt;b&gt;&amp;.txt</a>", body)
        self.assertIn(">&lt;i&gt;dir/</a>", body)
        self.assertIn("q&quot;uote&#39;.txt", body)
        self.assertNotIn("<b>", body)
        self.assertNotIn("<i>", body)
        self.assertNotIn('q"uote', body)

    def test_links_are_percent_encoded(self):
        hrefs = {name: href for href, name, _, _ in rows(self.listing().body)}
        self.assertEqual(hrefs["sub dir/"], "sub%20dir/")
        self.assertEqual(hrefs["100%.txt"], "100%25.txt")
        self.assertEqual(hrefs["a#b?.txt"], "a%23b%3F.txt")
        self.assertEqual(hrefs["caf\u00e9.txt"], "caf%C3%A9.txt")
        self.assertEqual(hrefs["<b>&.txt"], "%3Cb%3E&.txt")
        self.assertEqual(hrefs["q\"uote'.txt"].lower(), "q%22uote'.txt")
        # "a:b.txt" as a relative reference would be the scheme "a": the colon must be encoded
        self.assertEqual(hrefs["a:b.txt"], "a%3Ab.txt")
        for name, href in hrefs.items():
            self.assertEqual(urllib.parse.unquote(href), name)
            self.assertNotRegex(href, r"[ \"<>#?]")

    def test_every_link_leads_to_its_entry(self):
        for href, name, _, _ in rows(self.listing().body):
            with self.subTest(name=name):
                url = urllib.parse.urljoin(self.server.url("/pub/"), href)
                r = curl(url)
                if name.endswith("/"):
                    self.assertIn(r.status, (200, 403), r)  # listed, or a location that does not list
                else:
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.body, PUB[name].encode())

    def test_sizes_and_dates(self):
        cells = {name: (size, date) for _, name, size, date in rows(self.listing().body)}
        self.assertEqual(cells["zeta.txt"][0], "1234")
        self.assertEqual(cells["alpha.txt"][0], "10")
        self.assertEqual(cells["empty.bin"][0], "0")
        self.assertEqual(cells["caf\u00e9.txt"][0], str(len(PUB["caf\u00e9.txt"].encode())))
        self.assertEqual(cells["sub dir/"][0], "-")
        self.assertEqual(cells["zeta.txt"][1], "2001-02-03 04:05")
        self.assertEqual(cells["sub dir/"][1], "2001-02-03 04:05")

    def test_title_names_the_directory(self):
        body = self.listing("/pub/sub%20dir/").text
        self.assertIn("<title>Index of /pub/sub dir/</title>", body)
        self.assertEqual([n for _, n, _, _ in rows(body.encode())], ["inner.txt"])
        body = self.listing("/pub/%3Ci%3Edir/").text
        self.assertIn("Index of /pub/&lt;i&gt;dir/", body)
        self.assertNotIn("<i>", body)

    def test_empty_directory(self):
        r = self.listing("/pub/empty/")
        self.assertEqual(rows(r.body), [])
        self.assertIn('<a href="../">../</a>', r.text)

    def test_directory_without_slash_redirects(self):
        r = self.get("/pub/sub%20dir")
        self.assertEqual(r.status, 301, r)
        self.assertTrue(r.header("location").endswith("/pub/sub%20dir/"), r.header("location"))

    # ---- when there is no listing -----------------------------------------------------------

    def test_listing_off_by_default_gives_403(self):
        for path in ("/private/", "/"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 403, r)
                self.assertNotIn(b"hidden.txt", r.body)
                self.assertNotIn(b"Index of", r.body)

    def test_location_prefix_is_a_path_segment(self):
        # locations: {/pub: ...} covers /pub and /pub/..., not /public
        r = self.get("/public/")
        self.assertEqual(r.status, 403, r)
        self.assertNotIn(b"also.txt", r.body)

    def test_longer_location_turns_listing_off(self):
        r = self.get("/pub/closed/")
        self.assertEqual(r.status, 403, r)
        self.assertNotIn(b"secret.txt", r.body)
        self.assertEqual(self.get("/pub/closed/secret.txt").status, 200)

    def test_default_document_wins_over_listing(self):
        r = self.get("/pub/withindex/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"the default document\n")
        self.assertNotIn(b"other.txt", r.body)

    def test_missing_directory_gives_404(self):
        r = self.get("/pub/nothere/")
        self.assertEqual(r.status, 404, r)

    # ---- methods and protocols --------------------------------------------------------------

    def test_head(self):
        get = self.listing()
        out = raw_request(self.server.port(), b"HEAD /pub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), out)
        self.assertIn(b"\r\ncontent-type: text/html; charset=utf-8", head.lower())
        self.assertEqual(body, b"")
        m = re.search(rb"\r\ncontent-length: (\d+)", head.lower())
        self.assertIsNotNone(m, head)  # the length its GET gets (RFC 9110 9.3.2)
        self.assertEqual(int(m.group(1)), len(get.body))
        self.assertEqual(get.header("content-length"), str(len(get.body)))
        r = self.get("/pub/", "--head", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (200, "2"))

    def test_head_then_get_on_one_connection(self):
        req = b"HEAD /pub/ HTTP/1.1\r\nHost: x\r\n\r\nGET /pub/empty/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = raw_request(self.server.port(), req)
        self.assertEqual(out.count(b"HTTP/1.1 200"), 2, out)
        self.assertEqual(out.count(b"Index of /pub/empty/"), 2, out)  # title and heading, once
        self.assertNotIn(b"zeta.txt", out)

    def test_post_gives_405(self):
        r = self.get("/pub/", "--data-binary", "x=1")
        self.assertEqual(r.status, 405, r)
        self.assertIn("GET", r.header("allow") or "")
        self.assertNotIn(b"zeta.txt", r.body)

    def test_listing_over_http2(self):
        h1 = self.listing()
        r = self.listing("/pub/", "--http2-prior-knowledge")
        self.assertEqual(r.version, "2")
        self.assertEqual(rows(r.body), rows(h1.body))
        r = self.get("/pub/closed/", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.version), (403, "2"))

    def test_http10_keepalive_client_can_delimit_the_listing(self):
        out = raw_request(self.server.port(), b"GET /pub/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                                b"GET /pub/empty/ HTTP/1.0\r\n\r\n")
        first, _, rest = out.partition(b"\r\n\r\n")
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), out)
        m = re.search(rb"\r\ncontent-length: (\d+)", first.lower())
        if m:
            length = int(m.group(1))
            self.assertTrue(rest[:length].endswith(b"</html>\n"), rest[:length])
            self.assertIn(b"Index of /pub/empty/", rest[length:])  # the second response follows
        else:
            self.assertIn(b"\r\nconnection: close", first.lower())
            self.assertTrue(rest.endswith(b"</html>\n"), rest[-200:])

    def test_large_directory(self):
        r = self.listing("/pub/many/")
        entries = rows(r.body)
        self.assertEqual([n for _, n, _, _ in entries], [f"f{i:04d}.txt" for i in range(500)])
        self.assertEqual([s for _, _, s, _ in entries], [str(i) for i in range(500)])


if __name__ == "__main__":
    h2ptest.main()
