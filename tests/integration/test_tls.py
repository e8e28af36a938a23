"""TLS: certificates chosen by SNI, the default certificate without SNI, ALPN per site
(`http2`), TLS 1.2 as the floor, and bad key material refused at start."""
import os
import re
import subprocess
import unittest

import h2ptest
from h2ptest import Server, curl, make_cert, run_h2pool

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


CONF = """
server:
  threads: 2
sites:
  a:
    bindings: [https://127.0.0.1:{port:https}:a.test, https://127.0.0.1:{port:named}:a.test]
    tls: {certificate: {dir}/certs/a.test.pem, key: {dir}/certs/a.test.key}
    root: {dir}/a
  b:
    bindings: [https://127.0.0.1:{port:https}:b.test, https://127.0.0.1:{port:named}:b.test]
    tls: {certificate: {dir}/certs/b.test.pem, key: {dir}/certs/b.test.key}
    root: {dir}/b
    http2: false
  c:
    bindings: [https://127.0.0.1:{port:https}]
    tls: {certificate: {dir}/certs/c.test.pem, key: {dir}/certs/c.test.key}
    root: {dir}/c
  plain:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/c
"""

FILES = {"a/index.html": "site a\n", "b/index.html": "site b\n", "c/index.html": "site c\n"}


def s_client(port, *args, servername=None, timeout=20):
    """openssl s_client; returns (returncode, stdout + stderr)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    proc = subprocess.run(cmd + list(args), input=b"", capture_output=True, timeout=timeout)
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def served_cn(port, servername=None):
    rc, out = s_client(port, servername=servername)
    m = re.search(r"^subject=.*?CN\s*=\s*([^,/\n]+)", out, re.M)
    if m is None:
        raise AssertionError("no server certificate in s_client output:\n" + out)
    return m.group(1).strip()


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(CONF, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    unittest.addModuleCleanup(stop_cleanly, SERVER)
    certs = SERVER.path("certs")
    os.makedirs(certs)
    for cn in ("a.test", "b.test", "c.test"):
        make_cert(certs, cn)
    SERVER.start()


class SniTest(unittest.TestCase):
    def https(self, host, path="/", *args, name="https"):
        port = SERVER.port(name)
        return curl(f"https://{host}:{port}{path}", "--resolve", f"{host}:{port}:127.0.0.1", "-k", *args)

    def test_sites_over_https(self):
        self.assertEqual(self.https("a.test").body, b"site a\n")
        self.assertEqual(self.https("b.test").body, b"site b\n")
        self.assertEqual(self.https("other.test").body, b"site c\n")

    def test_certificate_chosen_by_sni(self):
        self.assertEqual(served_cn(SERVER.port("https"), "a.test"), "a.test")
        self.assertEqual(served_cn(SERVER.port("https"), "b.test"), "b.test")
        self.assertEqual(served_cn(SERVER.port("https"), "B.Test"), "b.test")
        self.assertEqual(served_cn(SERVER.port("https"), "unknown.test"), "c.test")

    def test_certificate_verifies_against_its_ca(self):
        # without -k: the chain curl gets for a.test is a.test's own self-signed certificate
        port = SERVER.port("https")
        for host in ("a.test", "b.test"):
            with self.subTest(host=host):
                r = curl(f"https://{host}:{port}/", "--resolve", f"{host}:{port}:127.0.0.1", "--cacert",
                         SERVER.path(f"certs/{host}.pem"))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, f"site {host[0]}\n".encode())
        r = curl(f"https://a.test:{port}/", "--resolve", f"a.test:{port}:127.0.0.1", "--cacert", SERVER.path("certs/b.test.pem"))
        self.assertEqual(r.status, 0, "a.test answered with b.test's certificate")

    def test_no_sni_gets_the_catch_all_certificate(self):
        self.assertEqual(served_cn(SERVER.port("https")), "c.test")
        r = curl(f"https://127.0.0.1:{SERVER.port('https')}/", "-k")
        self.assertEqual((r.status, r.body), (200, b"site c\n"))

    def test_no_sni_without_catch_all_gets_the_first_site_certificate(self):
        self.assertEqual(served_cn(SERVER.port("named")), "a.test")
        self.assertEqual(served_cn(SERVER.port("named"), "b.test"), "b.test")
        # unknown SNI: the default certificate, and then no site for the Host
        self.assertEqual(served_cn(SERVER.port("named"), "nobody.test"), "a.test")
        r = self.https("nobody.test", name="named")
        self.assertEqual(r.status, 400, r)

    def test_sni_and_host_disagree(self):
        # routing is by Host (as IIS): the certificate follows SNI, the content follows Host
        port = SERVER.port("https")
        r = curl(f"https://a.test:{port}/", "--resolve", f"a.test:{port}:127.0.0.1", "-k", "-H", "Host: b.test")
        self.assertEqual((r.status, r.body), (200, b"site b\n"))


class AlpnTest(unittest.TestCase):
    def https(self, host, *args):
        port = SERVER.port("https")
        return curl(f"https://{host}:{port}/", "--resolve", f"{host}:{port}:127.0.0.1", "-k", *args)

    def test_h2_over_tls(self):
        r = self.https("a.test", "--http2")
        self.assertEqual((r.status, r.version, r.body), (200, "2", b"site a\n"))
        r = self.https("c.test", "--http2")
        self.assertEqual((r.status, r.version, r.body), (200, "2", b"site c\n"))

    def test_http2_false_negotiates_http11(self):
        r = self.https("b.test", "--http2")
        self.assertEqual((r.status, r.version, r.body), (200, "1.1", b"site b\n"))
        rc, out = s_client(SERVER.port("https"), "-alpn", "h2,http/1.1", servername="b.test")
        self.assertIn("ALPN protocol: http/1.1", out)
        rc, out = s_client(SERVER.port("https"), "-alpn", "h2,http/1.1", servername="a.test")
        self.assertIn("ALPN protocol: h2", out)

    def test_http11_client(self):
        r = self.https("a.test", "--http1.1")
        self.assertEqual((r.status, r.version), (200, "1.1"))


class ProtocolVersionTest(unittest.TestCase):
    def assert_refused(self, flag):
        # SECLEVEL=0 lets this OpenSSL offer TLS 1.0/1.1: the refusal must come from the server.
        # (libh2o 2.2.5 closes the connection without flushing the protocol_version alert.)
        rc, out = s_client(SERVER.port("https"), flag, "-cipher", "DEFAULT@SECLEVEL=0", servername="a.test")
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("no protocols available", out)
        self.assertIn("Cipher is (NONE)", out)
        self.assertNotIn("BEGIN CERTIFICATE", out)

    def test_tls11_is_refused(self):
        self.assert_refused("-tls1_1")

    def test_tls10_is_refused(self):
        self.assert_refused("-tls1")

    def test_tls12_and_tls13_are_accepted(self):
        for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            with self.subTest(proto=proto):
                rc, out = s_client(SERVER.port("https"), flag, servername="a.test")
                self.assertEqual(rc, 0, out)
                self.assertIn(f"New, {proto}, Cipher is ", out)
                self.assertIn("BEGIN CERTIFICATE", out)

    def test_plain_http_on_the_tls_port_gets_no_content(self):
        r = curl(f"http://127.0.0.1:{SERVER.port('https')}/")
        self.assertNotIn(b"site c", r.body)


BAD_CONF = """
sites:
  a:
    bindings: [https://127.0.0.1:{port:https}:a.test]
    tls: {certificate: {dir}/certs/a.test.pem, key: {dir}/certs/KEY}
    root: {dir}/a
"""


class BadKeyTest(unittest.TestCase):
    def start_with_key(self, key_name, key_content=None):
        server = Server(BAD_CONF.replace("KEY", key_name), {"a/index.html": "a\n"}, expect_start=False)
        self.addCleanup(server.cleanup)
        certs = server.path("certs")
        os.makedirs(certs)
        make_cert(certs, "a.test")
        make_cert(certs, "other.test")
        if key_content is not None:
            server.write("certs/" + key_name, key_content)
        server.start()
        try:
            rc = server.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("h2pool started with a bad key:\n" + server.read_log())
        return rc, server.read_log(), server

    def test_key_of_another_certificate_is_refused(self):
        rc, log, server = self.start_with_key("other.test.key")
        self.assertNotEqual(rc, 0, log)
        self.assertIn("other.test.key", log)
        self.assertRegex(log, r"(?i)key.*(does not match|mismatch)")
        r = curl(server.url("/", "https", "https"), "-k")
        self.assertEqual(r.status, 0)

    def test_garbage_key_is_refused(self):
        rc, log, _ = self.start_with_key("garbage.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        self.assertNotEqual(rc, 0, log)
        self.assertIn("garbage.key", log)

    def test_missing_key_is_refused(self):
        rc, log, _ = self.start_with_key("missing.key")
        self.assertNotEqual(rc, 0, log)
        self.assertIn("missing.key", log)

    def test_config_test_reports_a_key_that_does_not_match(self):
        server = Server(BAD_CONF.replace("KEY", "other.test.key"), {"a/index.html": "a\n"}, expect_start=False)
        self.addCleanup(server.cleanup)
        os.makedirs(server.path("certs"))
        make_cert(server.path("certs"), "a.test")
        make_cert(server.path("certs"), "other.test")
        proc = run_h2pool("-t", "-c", server.conf)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertNotIn("configuration OK", proc.stdout)
        self.assertRegex(proc.stderr, r"h2pool\.yaml:\d+:\d+: sites\.a\.tls.*other\.test\.key")


if __name__ == "__main__":
    h2ptest.main()
