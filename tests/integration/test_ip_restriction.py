"""ip_restriction (IIS IP address restrictions): deny rules win, then allow rules, then the default;
IPv4 and IPv6 CIDRs (an IPv4 client of a dual-stack `*` listener matches IPv4 rules); X-Forwarded-For
only from trusted proxies, and then its right-most untrusted address.  Each check runs over HTTP/1.1
and HTTP/2 prior knowledge.  The tests' clients are always on loopback: the rules name 127.0.0.0/8,
::1 and addresses that the client can only claim through X-Forwarded-For.
"""
import socket
import unittest

import h2ptest
from h2ptest import Server, curl

PAGE = b"restricted page\n"

CONF = """
server:
  threads: 2
sites:
  open:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    http2: true
    locations:
      /admin: {modules: {ip_restriction: {deny: [127.0.0.0/8]}}}
  deny_loopback:
    bindings: [http://127.0.0.1:{port:http}:deny.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {deny: [10.0.0.0/8, 127.0.0.0/8]}
    locations:
      /public: {modules: {ip_restriction: {enabled: false}}}
      /lab: {modules: {ip_restriction: {default: deny, allow: [127.0.0.1]}}}
  allow_loopback:
    bindings: [http://127.0.0.1:{port:http}:allow.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {default: deny, allow: [192.0.2.0/24, 127.0.0.1/32]}
  closed:
    bindings: [http://127.0.0.1:{port:http}:closed.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {default: deny, allow: [10.0.0.0/8, "::1"]}
  deny_wins:
    bindings: [http://127.0.0.1:{port:http}:both.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {allow: [127.0.0.0/8], deny: [127.0.0.1]}
  untrusted:
    bindings: [http://127.0.0.1:{port:http}:xff.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {default: deny, allow: [203.0.113.0/24]}
  proxied:
    bindings: [http://127.0.0.1:{port:http}:proxied.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {default: deny, allow: [203.0.113.0/24, "2001:db8::/32"], trusted_proxies: [127.0.0.1, 10.0.0.0/8]}
  proxied_deny:
    bindings: [http://127.0.0.1:{port:http}:pdeny.test]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {deny: [198.51.100.0/24], trusted_proxies: [127.0.0.1]}
"""

# the dual-stack site first: the harness waits for the first port to accept on 127.0.0.1
CONF_V6 = """
server:
  threads: 1
sites:
  dual_stack:
    bindings: ["http://*:{port:dual}"]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {deny: [127.0.0.0/8]}
  v6_denied:
    bindings: ["http://[::1]:{port:v6}"]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {deny: ["::1/128"]}
  v6_allowed:
    bindings: ["http://[::1]:{port:v6}:allow6.test"]
    root: {dir}/www
    http2: true
    modules:
      ip_restriction: {default: deny, allow: ["::1"]}
"""

FILES = {
    "www/index.html": PAGE,
    "www/admin/index.html": PAGE,
    "www/adminx.html": PAGE,
    "www/public/index.html": PAGE,
    "www/lab/index.html": PAGE,
}


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(CONF, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    SERVER.start()


class IpCase(unittest.TestCase):
    server = None

    def request(self, url_host, port, path, host, h2, headers):
        args = []
        if host:
            args += ["-H", f"Host: {host}"]
        for h in headers:
            args += ["-H", h]
        if h2:
            args.append("--http2-prior-knowledge")
        r = curl(f"http://{url_host}:{port}{path}", *args)
        self.assertNotEqual(r.status, 0, "no response")
        self.assertEqual(r.version, "2" if h2 else "1.1")
        return r

    def expect(self, status, path="/index.html", host=None, headers=(), url_host="127.0.0.1", port=None):
        port = port or SERVER.port()
        for h2 in (False, True):
            with self.subTest(host=host, path=path, headers=headers, h2=h2, url_host=url_host):
                r = self.request(url_host, port, path, host, h2, headers)
                self.assertEqual(r.status, status, r)
                if status == 200:
                    self.assertEqual(r.body, PAGE)
                else:
                    self.assertNotIn(PAGE, r.body)

    def allowed(self, host=None, path="/index.html", headers=(), **kw):
        self.expect(200, path, host, headers, **kw)

    def denied(self, host=None, path="/index.html", headers=(), **kw):
        self.expect(403, path, host, headers, **kw)


class RulesTest(IpCase):
    def test_no_rules_allows_everyone(self):
        self.allowed()

    def test_deny_loopback_is_403(self):
        self.denied("deny.test")
        self.denied("deny.test", "/")
        self.denied("deny.test", "/missing.html")  # refused before the file system is asked

    def test_allow_list(self):
        self.allowed("allow.test")

    def test_default_deny(self):
        self.denied("closed.test")

    def test_deny_wins_over_allow(self):
        self.denied("both.test")

    def test_head_is_denied_too(self):
        for h2 in ([], ["--http2-prior-knowledge"]):
            r = curl(SERVER.url("/index.html"), "-H", "Host: deny.test", "-I", *h2)
            self.assertEqual(r.status, 403)


class ScopeTest(IpCase):
    def test_location_adds_the_module(self):
        # the site has no rules; /admin names the module
        self.allowed(None, "/index.html")
        self.denied(None, "/admin/index.html")
        self.denied(None, "/admin/")
        self.denied(None, "/admin")

    def test_location_disables_the_module(self):
        self.allowed("deny.test", "/public/index.html")
        self.denied("deny.test", "/index.html")

    def test_location_replaces_the_site_settings(self):
        # the site denies 127.0.0.0/8; /lab's own settings (default deny, allow 127.0.0.1) replace them
        self.allowed("deny.test", "/lab/index.html")

    def test_location_prefix_is_a_whole_segment(self):
        self.allowed(None, "/adminx.html")  # not inside /admin


class ForwardedForTest(IpCase):
    def test_spoofed_header_is_ignored_without_trusted_proxies(self):
        self.denied("xff.test", headers=["X-Forwarded-For: 203.0.113.5"])
        self.denied("xff.test", headers=["X-Forwarded-For: 127.0.0.1, 203.0.113.5"])
        # and a trusted-proxy client cannot claim to be 127.0.0.1 to get past a deny rule either
        self.denied("deny.test", headers=["X-Forwarded-For: 192.0.2.1"])

    def test_trusted_proxy_passes_the_client_address(self):
        self.allowed("proxied.test", headers=["X-Forwarded-For: 203.0.113.5"])
        self.allowed("proxied.test", headers=["X-Forwarded-For: 203.0.113.5:4711"])
        self.allowed("proxied.test", headers=["X-Forwarded-For: 2001:db8::5"])
        self.allowed("proxied.test", headers=["X-Forwarded-For: [2001:db8::5]:443"])
        # the proxy itself is not allowed
        self.denied("proxied.test")

    def test_right_most_untrusted_address_is_the_client(self):
        # the client wrote 203.0.113.5 itself; the proxy appended the address it saw
        self.denied("proxied.test", headers=["X-Forwarded-For: 203.0.113.5, 198.51.100.7"])
        self.allowed("proxied.test", headers=["X-Forwarded-For: 198.51.100.7, 203.0.113.5"])
        # a chain of trusted proxies is skipped
        self.allowed("proxied.test", headers=["X-Forwarded-For: 203.0.113.5, 10.1.1.1, 127.0.0.1"])
        self.denied("proxied.test", headers=["X-Forwarded-For: 198.51.100.7, 10.1.1.1"])
        # several headers are one list
        self.allowed("proxied.test", headers=["X-Forwarded-For: 198.51.100.7", "X-Forwarded-For: 203.0.113.5"])
        self.denied("proxied.test", headers=["X-Forwarded-For: 203.0.113.5", "X-Forwarded-For: 198.51.100.7"])

    def test_garbage_does_not_pass(self):
        for value in ("junk", "203.0.113.5, junk", "unknown", "203.0.113.5/24", "::ffff:", ""):
            self.denied("proxied.test", headers=[f"X-Forwarded-For: {value}"])

    def test_forwarded_client_hits_deny_rules(self):
        self.denied("pdeny.test", headers=["X-Forwarded-For: 198.51.100.7"])
        # the real client 198.51.100.7 claims to be 192.0.2.1; the proxy appends the truth
        self.denied("pdeny.test", headers=["X-Forwarded-For: 192.0.2.1, 198.51.100.7"])
        self.allowed("pdeny.test", headers=["X-Forwarded-For: 198.51.100.7, 192.0.2.1"])
        self.allowed("pdeny.test")


@unittest.skipUnless(have_ipv6_loopback(), "no IPv6 loopback on this machine")
class Ipv6Test(IpCase):
    @classmethod
    def setUpClass(cls):
        cls.v6 = Server(CONF_V6, FILES)
        cls.addClassCleanup(cls.v6.cleanup)  # also when start() fails: no server outlives the test
        cls.v6.start()
        h2ptest.wait_until(lambda: curl(f"http://[::1]:{cls.v6.port('v6')}/", "--max-time", "2").status != 0,
                           what="the [::1] listener")

    def test_ipv6_loopback_denied(self):
        self.denied(url_host="[::1]", port=self.v6.port("v6"))

    def test_ipv6_loopback_allowed(self):
        self.allowed("allow6.test", url_host="[::1]", port=self.v6.port("v6"))

    def test_ipv4_client_of_a_dual_stack_listener_matches_ipv4_rules(self):
        # the peer is ::ffff:127.0.0.1 on the `*` socket; it must match 127.0.0.0/8
        self.denied(url_host="127.0.0.1", port=self.v6.port("dual"))
        # ::1 on the same socket is no IPv4 address
        self.allowed(url_host="[::1]", port=self.v6.port("dual"))


if __name__ == "__main__":
    h2ptest.main()
