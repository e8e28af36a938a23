"""redirect (IIS HTTP redirect): exact and wildcard rules (each `*` a capture for $1..$9), the first
match wins, every redirect status, the client's query string kept, absolute and path targets, rules
per location with per-module inheritance.  Each check runs over HTTP/1.1 and HTTP/2 prior knowledge.
"""
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request, run_h2pool

CONF = """
server:
  threads: 2
sites:
  main:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    http2: true
    modules:
      redirect:
        - {from: /exact, to: /target, status: 301}
        - {from: /found, to: /f}
        - {from: /s302, to: /t302, status: 302}
        - {from: /s307, to: /t307, status: 307}
        - {from: /s308, to: /t308, status: 308}
        - {from: /old/*, to: /new/$1, status: 301}
        - {from: /blog/*/*, to: "https://blog.example/$2/$1", status: 308}
        - {from: "/legacy/*.asp", to: "/app/$1.php", status: 301}
        - {from: /first/*, to: /one/$1, status: 302}
        - {from: /first/x, to: /two, status: 302}
        - {from: /search/*, to: "/find?term=$1", status: 302}
        - {from: /anchor, to: "/page#top", status: 302}
        - {from: /swap/*-*, to: "/$2/$1/$3", status: 302}
        - {from: /keep/moved, to: /moved-here, status: 301}
        - {from: /none/x, to: /y, status: 301}
        - {from: /area/old, to: /site-rule, status: 301}
        - &go {from: "/go*", to: "https://www.example.com$1", status: 302}
        - &net {from: "/net*", to: "//www.example.com$1", status: 302}
        - &rel {from: "/rel*", to: "/$1", status: 302}
        - &bare {from: "/bare*", to: "$1", status: 302}
    locations:
      /area: {modules: {redirect: [{from: /area/*, to: /zone/$1, status: 307}]}}
      /keep: {directory_listing: true}
      /none: {modules: {redirect: []}}
  other:
    bindings: [http://127.0.0.1:{port:http}:other.test]
    root: {dir}/www
    http2: true
  unfiltered:  # request_filtering off: '\\' and friends reach the redirect rules
    bindings: [http://127.0.0.1:{port:http}:unfiltered.test]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {enabled: false}
      redirect: [*go, *net, *rel, *bare]
"""

FILES = {
    "www/index.html": b"index\n",
    "www/exact-not": b"not redirected\n",
    "www/none/x": b"no redirect here\n",
    "www/old.html": b"old.html is no /old/ path\n",
}

SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(CONF, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    SERVER.start()


class RedirectCase(unittest.TestCase):
    def each_protocol(self, path, check, *args, host=None):
        port = SERVER.port()
        for h2 in (False, True):
            extra = ["--path-as-is"] + (["--http2-prior-knowledge"] if h2 else [])
            if host:
                extra += ["-H", f"Host: {host}"]
            with self.subTest(path=path, h2=h2, args=args):
                r = curl(f"http://127.0.0.1:{port}{path}", *extra, *args)
                self.assertEqual(r.version, "2" if h2 else "1.1")
                check(r)

    def assert_redirect(self, path, status, location, *args, host=None):
        def check(r):
            self.assertEqual((r.status, r.header("location")), (status, location), r)
        self.each_protocol(path, check, *args, host=host)

    def assert_not_redirected(self, path, status, body=None, host=None):
        def check(r):
            self.assertEqual(r.status, status, r)
            self.assertIsNone(r.header("location"))
            if body is not None:
                self.assertEqual(r.body, body)
        self.each_protocol(path, check, host=host)


class ExactTest(RedirectCase):
    def test_exact_path(self):
        self.assert_redirect("/exact", 301, "/target")

    def test_exact_means_the_whole_path(self):
        self.assert_not_redirected("/exact-not", 200, b"not redirected\n")
        self.assert_not_redirected("/exact/", 404)
        self.assert_not_redirected("/EXACT", 404)
        self.assert_not_redirected("/old.html", 200)

    def test_each_status(self):
        self.assert_redirect("/found", 302, "/f")  # the default
        self.assert_redirect("/s302", 302, "/t302")
        self.assert_redirect("/s307", 307, "/t307")
        self.assert_redirect("/s308", 308, "/t308")

    def test_head_and_post(self):
        self.assert_redirect("/exact", 301, "/target", "-I")
        self.assert_redirect("/s307", 307, "/t307", "-X", "POST", "--data", "x=1")

    def test_body_names_the_target(self):
        def check(r):
            self.assertEqual(r.status, 301)
            self.assertIn(b"/target", r.body)
        self.each_protocol("/exact", check)

    def test_dot_segments_and_escapes_are_resolved_first(self):
        self.assert_redirect("/./exact", 301, "/target")
        self.assert_redirect("/%65xact", 301, "/target")

    def test_request_filtering_runs_first(self):
        # the pipeline order: a ".." segment is refused (404.5) before any redirect rule is tried
        self.assert_not_redirected("/x/../exact", 404)


class WildcardTest(RedirectCase):
    def test_capture(self):
        self.assert_redirect("/old/page.html", 301, "/new/page.html")
        self.assert_redirect("/old/a/b/c", 301, "/new/a/b/c")
        self.assert_redirect("/old/", 301, "/new/")

    def test_star_needs_the_prefix(self):
        self.assert_not_redirected("/old", 404)

    def test_two_captures_into_an_absolute_url(self):
        self.assert_redirect("/blog/2019/post-title", 308, "https://blog.example/post-title/2019")

    def test_capture_inside_a_segment(self):
        self.assert_redirect("/legacy/shop/cart.asp", 301, "/app/shop/cart.php")
        self.assert_not_redirected("/legacy/shop/cart.aspx", 404)

    def test_missing_capture_is_empty(self):
        self.assert_redirect("/swap/a-b", 302, "/b/a/")
        self.assert_redirect("/swap/a-b-c", 302, "/b-c/a/")

    def test_first_match_wins(self):
        self.assert_redirect("/first/x", 302, "/one/x")

    def test_captures_are_escaped_for_the_location(self):
        self.assert_redirect("/old/a%20b", 301, "/new/a%20b")
        self.assert_redirect("/old/%3F%23%25", 301, "/new/%3F%23%25")
        self.assert_redirect("/old/caf%C3%A9", 301, "/new/caf%C3%A9")

    def test_no_header_injection(self):
        def check(r):
            self.assertEqual(r.status, 301)
            self.assertEqual(r.header("location"), "/new/%0D%0ASet-Cookie:%20evil%3D1")
            self.assertIsNone(r.header("set-cookie"))
        self.each_protocol("/old/%0d%0aSet-Cookie:%20evil=1", check)
        out = raw_request(SERVER.port(), b"GET /old/x?a=%0d%0a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"\r\nlocation: /new/x?a=%0d%0a\r\n", out.lower())


class CapturesKeepTheHostTest(RedirectCase):
    """A capture can never change the scheme, userinfo, host or port of the target."""

    AFTER_AUTHORITY = [
        ("/go@evil.com/", "/%40evil.com/"),
        ("/go%40evil.com/", "/%40evil.com/"),
        ("/go:8080/", "/:8080/"),
        ("/go%3A8080/", "/:8080/"),
        ("/go:@evil.com", "/:%40evil.com"),
        ("/go.evil.com/", "/.evil.com/"),
        ("/go%2Eevil.com", "/.evil.com"),
        ("/go-x.evil.com", "/-x.evil.com"),
        ("/go//evil.com", "/evil.com"),
        ("/go%2F%2Fevil.com", "/evil.com"),
        ("/go%2F@evil.com", "/%40evil.com"),
        ("/go%09evil.com", "/%09evil.com"),
        ("/go%0d%0a@evil.com", "/%0D%0A%40evil.com"),
        ("/go%20@evil.com", "/%20%40evil.com"),
        ("/go%3F@evil.com", "/%3F%40evil.com"),
        ("/go%23@evil.com", "/%23%40evil.com"),
        ("/go%EF%BC%A0evil.com", "/%EF%BC%A0evil.com"),  # U+FF20 FULLWIDTH COMMERCIAL AT
        ("/go%C3%A9", "/%C3%A9"),
        ("/go/page", "/page"),
        ("/go", ""),
    ]

    def test_capture_right_after_the_host(self):
        for path, rest in self.AFTER_AUTHORITY:
            self.assert_redirect(path, 302, "https://www.example.com" + rest)
        self.assert_redirect("/go?x=1", 302, "https://www.example.com?x=1")
        self.assert_redirect("/go@evil.com?x=1", 302, "https://www.example.com/%40evil.com?x=1")

    def test_network_path_target(self):
        self.assert_redirect("/net@evil.com", 302, "//www.example.com/%40evil.com")
        self.assert_redirect("/net:1@evil.com", 302, "//www.example.com/:1%40evil.com")
        self.assert_redirect("/net.evil.com", 302, "//www.example.com/.evil.com")

    def test_backslashes_without_request_filtering(self):
        # request_filtering refuses '\\' (404.5); without it the capture still cannot name a host
        self.assert_not_redirected("/go%5Cevil.com", 404)
        for path, location in (("/go%5Cevil.com", "https://www.example.com/%5Cevil.com"),
                               ("/go%5C%5Cevil.com", "https://www.example.com/%5C%5Cevil.com"),
                               ("/go/%5Cevil.com", "https://www.example.com/%5Cevil.com"),
                               ("/rel%5C%5Cevil.com", "/%5C%5Cevil.com"),
                               ("/rel/%5Cevil.com", "/%5Cevil.com"),
                               ("/bare%5C%5Cevil.com", "%5C%5Cevil.com"),
                               ("/go@evil.com", "https://www.example.com/%40evil.com")):
            self.assert_redirect(path, 302, location, host="unfiltered.test")

    def test_relative_target_never_names_a_host(self):
        # "/" + "/evil.com" would be "//evil.com": a network-path reference to evil.com
        for path in ("/rel/evil.com", "/rel%2Fevil.com", "/rel%2F%2Fevil.com", "/rel//evil.com"):
            self.assert_redirect(path, 302, "/evil.com")
        self.assert_redirect("/rel%09/evil.com", 302, "/%09/evil.com")
        self.assert_redirect("/rel/x", 302, "/x")

    def test_bare_capture_never_makes_a_scheme(self):
        self.assert_redirect("/barehttps:%2F%2Fevil.com", 302, "https%3A/evil.com")
        self.assert_redirect("/barejavascript:alert(1)", 302, "javascript%3Aalert(1)")
        self.assert_redirect("/bare%2F%2Fevil.com", 302, "/evil.com")
        self.assert_redirect("/bare/x:y", 302, "/x:y")


BAD_TARGET_CONF = """
sites:
  main:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    modules:
      redirect:
        - {from: "/a*", to: "TO"}
"""


class TargetCheckedAtLoadTest(unittest.TestCase):
    def test_capture_in_scheme_or_authority_is_refused(self):
        for to in ("https://$1.example.com/", "https://www.example.com:$1/", "https://$1@www.example.com/", "$1://x/", "https:$1"):
            with self.subTest(to=to):
                server = Server(BAD_TARGET_CONF.replace("TO", to), {"www/index.html": "x\n"}, expect_start=False)
                self.addCleanup(server.cleanup)
                proc = run_h2pool("-t", "-c", server.conf)
                self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
                self.assertRegex(proc.stderr, r"h2pool\.yaml:8:\d+: sites\.main\.modules\.redirect\[0\]\.to: .*capture")


class QueryTest(RedirectCase):
    def test_query_is_kept(self):
        self.assert_redirect("/exact?a=1&b=2", 301, "/target?a=1&b=2")
        self.assert_redirect("/old/p?x=%20y", 301, "/new/p?x=%20y")
        self.assert_redirect("/blog/y/t?utm=1", 308, "https://blog.example/t/y?utm=1")

    def test_query_joins_a_target_query(self):
        self.assert_redirect("/search/cats?page=2", 302, "/find?term=cats&page=2")
        self.assert_redirect("/search/cats", 302, "/find?term=cats")

    def test_empty_query_adds_nothing(self):
        self.assert_redirect("/exact?", 301, "/target")

    def test_query_goes_before_a_fragment(self):
        self.assert_redirect("/anchor?q=1", 302, "/page?q=1#top")


class ScopeTest(RedirectCase):
    def test_location_rules_replace_the_site_rules(self):
        # /area names the module: its rule applies there, the site's /area/old rule does not
        self.assert_redirect("/area/old", 307, "/zone/old")
        self.assert_redirect("/area/x/y?z=1", 307, "/zone/x/y?z=1")

    def test_location_that_does_not_name_the_module_keeps_the_site_rules(self):
        self.assert_redirect("/keep/moved", 301, "/moved-here")

    def test_empty_rule_list_removes_the_module_there(self):
        self.assert_not_redirected("/none/x", 200, b"no redirect here\n")

    def test_other_locations_keep_the_site_rules(self):
        self.assert_redirect("/old/q", 301, "/new/q")

    def test_other_site_has_no_rules(self):
        self.assert_not_redirected("/exact", 404, host="other.test")
        self.assert_not_redirected("/index.html", 200, b"index\n", host="other.test")
        self.assert_not_redirected("/index.html", 200, b"index\n")


if __name__ == "__main__":
    h2ptest.main()
