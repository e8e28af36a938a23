"""TLS: certificates chosen by SNI, the default certificate without SNI, ALPN per site
(`http2`), TLS 1.2 as the floor, bad key material refused at start, and client-certificate
policies per site that a Host differing from the SNI cannot walk around (421)."""
import os
import re
import socket
import ssl
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
  req:
    bindings: [https://127.0.0.1:{port:https}:req.test]
    tls: {certificate: {dir}/certs/req.test.pem, key: {dir}/certs/req.test.key, client_ca: {dir}/certs/ca.pem,
          client_verify: required}
    root: {dir}/req
  req2:  # the same policy as req: the same CA certificates (a copy of the file), required
    bindings: [https://127.0.0.1:{port:https}:req2.test]
    tls: {certificate: {dir}/certs/req2.test.pem, key: {dir}/certs/req2.test.key, client_ca: {dir}/certs/ca-copy.pem,
          client_verify: required}
    root: {dir}/req2
  opt:
    bindings: [https://127.0.0.1:{port:https}:opt.test]
    tls: {certificate: {dir}/certs/opt.test.pem, key: {dir}/certs/opt.test.key, client_ca: {dir}/certs/ca.pem,
          client_verify: optional}
    root: {dir}/opt
  otherca:  # required, another CA
    bindings: [https://127.0.0.1:{port:https}:otherca.test]
    tls: {certificate: {dir}/certs/otherca.test.pem, key: {dir}/certs/otherca.test.key, client_ca: {dir}/certs/ca2.pem,
          client_verify: required}
    root: {dir}/otherca
"""

FILES = {"a/index.html": "site a\n", "b/index.html": "site b\n", "c/index.html": "site c\n", "req/index.html": "site req\n",
         "req2/index.html": "site req2\n", "opt/index.html": "site opt\n", "otherca/index.html": "site otherca\n"}


def make_ca_and_client(directory, ca_name, client_name):
    """A CA (ca_name.pem/.key) and a client certificate it signed (client_name.pem/.key)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    ca, ca_key = os.path.join(directory, ca_name + ".pem"), os.path.join(directory, ca_name + ".key")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", f"/CN={ca_name} test CA", "-keyout", ca_key, "-out", ca)
    cert, key, csr = (os.path.join(directory, client_name + ext) for ext in (".pem", ".key", ".csr"))
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={client_name}",
        "-keyout", key, "-out", csr)
    ext = os.path.join(directory, client_name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key


s_client, served_cn = h2ptest.s_client, h2ptest.served_cn


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server(CONF, FILES)
    unittest.addModuleCleanup(SERVER.cleanup)
    unittest.addModuleCleanup(stop_cleanly, SERVER)
    certs = SERVER.path("certs")
    os.makedirs(certs)
    for cn in ("a.test", "b.test", "c.test", "req.test", "req2.test", "opt.test", "otherca.test"):
        make_cert(certs, cn)
    make_ca_and_client(certs, "ca", "client")
    make_ca_and_client(certs, "ca2", "client2")
    with open(os.path.join(certs, "ca.pem")) as f, open(os.path.join(certs, "ca-copy.pem"), "w") as g:
        g.write(f.read())
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


class ClientPolicyTest(unittest.TestCase):
    """A request whose Host picks a site with another client-certificate policy than the one its
    handshake followed (the SNI's site, or the default site without SNI) gets 421."""

    def fetch(self, sni, host=None, *args, cert=None, h2=False):
        """GET / over a handshake with SNI `sni` (None: no SNI) and Host `host` (default: sni)."""
        port = SERVER.port("https")
        extra = ["-k", "--http2" if h2 else "--http1.1"]
        if cert is not None:
            extra += ["--cert", SERVER.path(f"certs/{cert}.pem"), "--key", SERVER.path(f"certs/{cert}.key")]
        if host is not None and host != sni:
            extra += ["-H", f"Host: {host}"]
        if sni is None:  # curl sends no SNI for an IP address
            url = f"https://127.0.0.1:{port}/"
        else:
            url = f"https://{sni}:{port}/"
            extra += ["--resolve", f"{sni}:{port}:127.0.0.1"]
        return curl(url, *extra, *args)

    def assert_fetch(self, status, body, sni, host=None, cert=None):
        for h2 in (False, True):
            with self.subTest(sni=sni, host=host, cert=cert, h2=h2):
                r = self.fetch(sni, host, cert=cert, h2=h2)
                self.assertEqual(r.status, status, r)
                if status == 200:
                    self.assertEqual(r.body, body)
                    self.assertEqual(r.version, "1.1" if not h2 or host in ("b.test",) else "2")
                else:
                    self.assertNotIn(b"site ", r.body)

    def test_sni_without_policy_and_host_of_a_required_site(self):
        port = SERVER.port("https")
        for sni in ("a.test", "b.test", "c.test", "unknown.test"):
            for host in ("req.test", "REQ.Test", "req.test.", f"req.test:{port}", "req2.test", "otherca.test"):
                self.assert_fetch(421, None, sni, host)

    def test_no_sni_and_host_of_a_required_site(self):
        for host in ("req.test", "req.test.", "req2.test", "opt.test", "otherca.test"):
            self.assert_fetch(421, None, None, host)

    def test_raw_http11_on_a_handshake_without_sni(self):
        # openssl s_client: no SNI, no certificate, then a hand-written request naming req.test
        proc = subprocess.run(["openssl", "s_client", "-quiet", "-noservername", "-connect", f"127.0.0.1:{SERVER.port('https')}"],
                              input=b"GET / HTTP/1.1\r\nHost: req.test\r\nConnection: close\r\n\r\n", capture_output=True,
                              timeout=20)
        self.assertRegex(proc.stdout, rb"^HTTP/1\.1 421 ")
        self.assertNotIn(b"site req", proc.stdout)

    def test_required_site_without_a_certificate_fails_the_handshake(self):
        for h2 in (False, True):
            with self.subTest(h2=h2):
                self.assertEqual(self.fetch("req.test", h2=h2).status, 0)
                self.assertEqual(self.fetch("otherca.test", cert="client", h2=h2).status, 0)  # another CA's client

    def test_required_site_with_a_certificate(self):
        self.assert_fetch(200, b"site req\n", "req.test", cert="client")
        self.assert_fetch(200, b"site otherca\n", "otherca.test", cert="client2")

    def test_same_policy_serves_across_hosts(self):
        # req2 trusts the same CA certificates (another file with the same content) and requires too
        self.assert_fetch(200, b"site req2\n", "req.test", "req2.test", cert="client")
        self.assert_fetch(200, b"site req\n", "req2.test", "req.test", cert="client")

    def test_another_policy_gets_421_even_with_a_certificate(self):
        # a site without policy, an optional one, one with another CA: each needs its own handshake
        for sni, host in (("req.test", "a.test"), ("req.test", "c.test"), ("req.test", "opt.test"), ("req.test", "otherca.test"),
                          ("opt.test", "req.test"), ("opt.test", "a.test")):
            self.assert_fetch(421, None, sni, host, cert="client")
        self.assert_fetch(421, None, "opt.test", "req.test")

    def test_optional_site(self):
        self.assert_fetch(200, b"site opt\n", "opt.test")
        self.assert_fetch(200, b"site opt\n", "opt.test", cert="client")

    def test_sites_without_policy_still_serve_across_hosts(self):
        # HTTP/2 connection coalescing and clients without SNI keep working among them
        self.assert_fetch(200, b"site c\n", "a.test", "c.test")
        self.assert_fetch(200, b"site a\n", "c.test", "a.test")
        self.assert_fetch(200, b"site a\n", None, "a.test")
        self.assert_fetch(200, b"site a\n", "unknown.test", "a.test")

    def test_one_h2_connection_two_hosts(self):
        # the second request of the same HTTP/2 connection names the required site
        port = SERVER.port("https")
        out = subprocess.run(["curl", "-s", "-k", "--http2", "--resolve", f"a.test:{port}:127.0.0.1", "-o", "/dev/null", "-w",
                              "%{http_code} %{num_connects} %{http_version}\n", f"https://a.test:{port}/", "--next", "-s", "-k",
                              "--http2", "--resolve", f"a.test:{port}:127.0.0.1", "-H", "Host: req.test", "-o", "/dev/null", "-w",
                              "%{http_code} %{num_connects} %{http_version}\n", f"https://a.test:{port}/"],
                             capture_output=True, text=True, timeout=30).stdout.split("\n")
        self.assertEqual(out[:2], ["200 1 2", "421 0 2"], out)


RELOAD_CONF = """
sites:
  a:
    bindings: [https://127.0.0.1:{port:https}:a.test]
    tls: {certificate: {dir}/certs/a.test.pem, key: {dir}/certs/a.test.key POLICY}
    root: {dir}/a
"""


def read_response(conn):
    """One HTTP/1.1 response with a Content-Length from a socket: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response: %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1]), body


class PolicyAfterReloadTest(unittest.TestCase):
    def test_connection_from_before_a_reload_follows_the_new_policy(self):
        # policies are compared by content, not by context: a kept-alive connection made before a
        # reload that adds `client_verify: required` cannot reach the site without a certificate
        server = Server(RELOAD_CONF.replace(" POLICY", ""), {"a/index.html": "site a\n"})
        self.addCleanup(server.cleanup)
        self.addCleanup(stop_cleanly, server)
        certs = server.path("certs")
        os.makedirs(certs)
        make_cert(certs, "a.test")
        make_ca_and_client(certs, "ca", "client")
        server.start()
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"
        with tls.wrap_socket(socket.create_connection(("127.0.0.1", server.port("https"))), server_hostname="a.test") as conn:
            conn.sendall(request)
            self.assertEqual(read_response(conn), (200, b"site a\n"))
            policy = ", client_ca: {dir}/certs/ca.pem, client_verify: required".replace("{dir}", server.dir)
            server.write("conf.d/h2pool.yaml", server.expand(RELOAD_CONF.replace(" POLICY", policy)))
            h2ptest.wait_until(lambda: "configuration reloaded" in server.read_log(), what="the reload")
            conn.sendall(request)
            self.assertEqual(read_response(conn)[0], 421)
        port = server.port("https")
        r = curl(f"https://a.test:{port}/", "--resolve", f"a.test:{port}:127.0.0.1", "-k")
        self.assertEqual(r.status, 0, r)
        r = curl(f"https://a.test:{port}/", "--resolve", f"a.test:{port}:127.0.0.1", "-k", "--cert", os.path.join(certs, "client.pem"),
                 "--key", os.path.join(certs, "client.key"))
        self.assertEqual((r.status, r.body), (200, b"site a\n"))


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

    def test_tls13_suite_is_the_server_s_choice(self):
        """TLS 1.3 in the server's order, AES-128-GCM first, whatever order the client lists the
        AES suites in; a client that lists ChaCha20 first (no AES instructions) gets ChaCha20."""
        for offered, chosen in (("TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
                                ("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"),
                                ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
                                ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
                                 "TLS_CHACHA20_POLY1305_SHA256")):
            for site in ("a.test", None):  # the SNI's site, and no SNI (the default's context)
                with self.subTest(offered=offered, site=site):
                    rc, out = s_client(SERVER.port("https"), "-tls1_3", "-ciphersuites", offered, servername=site)
                    self.assertEqual(rc, 0, out)
                    self.assertIn(f"New, TLSv1.3, Cipher is {chosen}", out)

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
