"""authentication (anonymous, basic) and authorization (URL rules) modules: the README's modules section
`modules.authentication`, `modules.authorization`, 401.2 with a challenge, 403 for denied users.

Hashes are made here: bcrypt by python3's crypt module (or `htpasswd -B`), SHA-512 and SHA-256
crypt by `openssl passwd -6 / -5`.
"""
import base64
import os
import re
import shutil
import subprocess
import time
import unittest
import warnings

import h2ptest
from h2ptest import Server, curl, raw_request

SANITIZER_REPORT = re.compile(r"ERROR: \w+Sanitizer|runtime error:")


stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt  # deprecated, gone in 3.13: htpasswd is the fallback
    except ImportError:
        crypt = None


def bcrypt_hash(password, cost=4):
    if crypt is not None and crypt.METHOD_BLOWFISH in crypt.methods:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** cost))
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", "-C", str(cost), "u", password], check=True, capture_output=True, text=True)
        return out.stdout.strip().split(":", 1)[1]
    raise unittest.SkipTest("no bcrypt generator (python3 crypt module or htpasswd)")


def openssl_hash(password, scheme):
    out = subprocess.run(["openssl", "passwd", scheme, "-stdin"], input=password, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Hashes whose work factor is above the cap (bcrypt cost 12, SHA-crypt rounds=1000000), each with
# the message that refuses it.  Only the format is read: the digests need not match anything.
ABOVE_THE_CAP = [
    ("$2b$13$eBegFHS5ODXLWzO4nhTIV.PMNjp/ukC.5eVJq76lOiH5nammbEn72", "bcrypt cost 13 is above the cap of 12"),
    ("$2y$31$eBegFHS5ODXLWzO4nhTIV.PMNjp/ukC.5eVJq76lOiH5nammbEn72", "bcrypt cost 31 is above the cap of 12"),
    ("$6$rounds=1000001$saltsalt$A9Ehy8lEnOOklOCpupb4OwRi7NDS/H42113Up.YkaUCmU6D7ledgLn1p8KLH0YgkFwPzBPS6LsBcEOwhhG8SZ1",
     "SHA-crypt rounds=1000001 is above the cap of 1000000"),
    ("$5$rounds=999999999$saltsalt$qJJxVe/XhntoMmqVAOHIsi4XNluZCP7xDjNces33p30",
     "SHA-crypt rounds=999999999 is above the cap of 1000000"),
]


CONF = """
server:
  threads: 2
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}:main.test"]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {max_header_size: 1MiB}  # the huge-Authorization cases must reach authentication
      authentication:
        anonymous: true
        basic: {realm: "test realm", users_file: ../users.htpasswd}
        groups_file: ../groups.txt
      authorization:
        - {path: "/admin/*", allow: {users: [alice]}}
        - {path: "/admin/*", deny: {users: ["*"]}}
        - {path: "/staff/*", allow: {roles: [staff]}}
        - {path: "/staff/*", deny: {users: ["*"]}}
        - {path: "/members/*", deny: {users: ["?"]}}
        - {path: "/readonly/*", deny: {users: ["*"], verbs: [POST, PUT, DELETE]}}
        - {path: "/editors/*", allow: {roles: [editors], verbs: [GET, HEAD]}}
        - {path: "/editors/*", deny: {users: ["*"]}}
    locations:
      /private:
        modules:
          authentication:
            anonymous: false
            basic: {realm: private, users_file: ../users.htpasswd}
            groups_file: ../groups.txt
  closed:
    bindings: ["http://127.0.0.1:{port:http}:closed.test"]
    root: {dir}/www
    http2: true
    modules:
      request_filtering: {max_header_size: 1MiB}
      authentication:
        anonymous: false
        basic: {users_file: ../users.htpasswd}
        credential_cache: {ttl: 0s}
  rules:
    bindings: ["http://127.0.0.1:{port:http}:rules.test"]
    root: {dir}/www
    modules:
      authentication:
        basic: {realm: rules, users_file: ../users.htpasswd}
      authorization:
        - {path: "/open/*", allow: {users: ["*"]}}
        - {deny: {users: ["*"]}}
  noauth:
    bindings: ["http://127.0.0.1:{port:http}:noauth.test"]
    root: {dir}/www
    modules:
      authorization:
        - {path: "/admin/*", deny: {users: ["?"]}}
"""

FILES = {
    "www/hello.txt": "hello\n",
    "www/admin/a.txt": "admin area\n",
    "www/staff/s.txt": "staff area\n",
    "www/members/m.txt": "members area\n",
    "www/readonly/r.txt": "readonly area\n",
    "www/editors/e.txt": "editors area\n",
    "www/private/p.txt": "private area\n",
    "www/open/o.txt": "open area\n",
    "groups.txt": "# roles\nstaff: dave carol\neditors: erin\n",
}


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        users = {
            "alice": bcrypt_hash("alice-pw"),
            "bob": openssl_hash("bob-pw", "-6"),
            "carol": openssl_hash("carol-pw", "-5"),
            "dave": bcrypt_hash("dave-pw"),
            "erin": openssl_hash("erin-pw", "-6"),
        }
        files = dict(FILES)
        files["users.htpasswd"] = "".join(f"{u}:{h}\n" for u, h in users.items())
        cls.server = Server(CONF, files)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        cls.server.start()

    def get(self, path, *args, host="main.test", auth=None, **kw):
        port = self.server.port()
        extra = ["-H", f"Authorization: {auth}"] if auth is not None else []
        return curl(f"http://{host}:{port}{path}", "--resolve", f"{host}:{port}:127.0.0.1", *extra, *args, **kw)

    def assertChallenge(self, r, realm):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("www-authenticate"), f'Basic realm="{realm}"', r)

    def assertAlive(self):
        r = self.get("/hello.txt")
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(self.server.proc.poll(), "h2pool died")

    # ---- authentication: anonymous true ---------------------------------------------------

    def test_anonymous_request_passes(self):
        r = self.get("/hello.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello\n")
        self.assertIsNone(r.header("www-authenticate"))

    def test_valid_credentials_for_every_hash_scheme(self):
        for user in ["alice", "bob", "carol", "dave", "erin"]:
            for proto in [[], ["--http2-prior-knowledge"]]:
                with self.subTest(user=user, proto=proto):
                    r = self.get("/hello.txt", *proto, auth=basic(user, user + "-pw"))
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.body, b"hello\n")

    def test_curl_user_option(self):
        r = self.get("/hello.txt", "--user", "alice:alice-pw", "--basic")
        self.assertEqual(r.status, 200, r)

    def test_wrong_credentials_get_401_even_with_anonymous(self):
        for user, password in [("alice", "bob-pw"), ("alice", ""), ("alice", "alice-pw "), ("nobody", "alice-pw"),
                               ("ALICE", "alice-pw"), ("bob", "bob-p")]:
            with self.subTest(user=user, password=password):
                r = self.get("/hello.txt", auth=basic(user, password))
                self.assertChallenge(r, "test realm")
                self.assertNotIn(b"hello", r.body)

    def test_wrong_credentials_over_http2(self):
        r = self.get("/hello.txt", "--http2-prior-knowledge", auth=basic("alice", "nope"))
        self.assertEqual(r.version, "2")
        self.assertChallenge(r, "test realm")

    def test_scheme_name_is_case_insensitive(self):
        token = base64.b64encode(b"alice:alice-pw").decode()
        for scheme in ["basic", "BASIC", "Basic  "]:
            with self.subTest(scheme=scheme):
                r = self.get("/hello.txt", auth=f"{scheme} {token}")
                self.assertEqual(r.status, 200, r)

    def test_password_with_colon(self):
        # everything after the first colon is the password: a wrong one here, the right one is alice-pw
        r = self.get("/hello.txt", auth=basic("alice", "alice-pw:extra"))
        self.assertChallenge(r, "test realm")

    # ---- authentication: anonymous false --------------------------------------------------

    def test_anonymous_false_location_needs_credentials(self):
        r = self.get("/private/p.txt")
        self.assertChallenge(r, "private")
        self.assertNotIn(b"private area", r.body)
        r = self.get("/private/p.txt", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"private area\n")
        r = self.get("/private/p.txt", "--http2-prior-knowledge")
        self.assertChallenge(r, "private")
        r = self.get("/private/p.txt", "--http2-prior-knowledge", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 200, r)

    def test_anonymous_false_site(self):
        # the realm defaults to the site name
        r = self.get("/hello.txt", host="closed.test")
        self.assertChallenge(r, "closed")
        r = self.get("/nonexistent", host="closed.test")
        self.assertChallenge(r, "closed")  # no hint whether the resource exists
        r = self.get("/hello.txt", host="closed.test", auth=basic("carol", "carol-pw"))
        self.assertEqual(r.status, 200, r)
        r = self.get("/hello.txt", host="closed.test", auth=basic("carol", "dave-pw"))
        self.assertChallenge(r, "closed")

    def test_head_without_credentials(self):
        r = self.get("/hello.txt", "-I", host="closed.test")
        self.assertChallenge(r, "closed")

    # ---- malformed Authorization headers ----------------------------------------------------

    def test_malformed_authorization_gets_401_without_crash(self):
        cases = {
            "empty": "",
            "scheme only": "Basic",
            "scheme and space": "Basic ",
            "not base64": "Basic !!!***",
            "no colon": "Basic " + base64.b64encode(b"alicealice-pw").decode(),
            "empty user": "Basic " + base64.b64encode(b":alice-pw").decode(),
            "NUL in password": "Basic " + base64.b64encode(b"alice:alice-pw\0").decode(),
            "truncated base64": "Basic " + base64.b64encode(b"alice:alice-pw").decode()[:-3],
            "lone base64 char": "Basic QWxpY2U6YWxpY2UtcHc=A",
            "unknown scheme": "Bearer abc.def.ghi",
            "digest": 'Digest username="alice", realm="x", nonce="1", uri="/", response="0"',
            "scheme glued": "BasicYWxpY2U6YWxpY2UtcHc=",
            "huge 50 KB": "Basic " + "QUFB" * 12500,  # curl's HTTP/2 sends at most 64 KB of headers
            "huge valid prefix": basic("alice", "alice-pw") + "A" * 20000,
            "high bytes": "Basic \xff\xfe\xfd",
        }
        for name, value in cases.items():
            for proto in [[], ["--http2-prior-knowledge"]]:
                with self.subTest(case=name, proto=proto):
                    r = self.get("/hello.txt", *proto, "-H", f"Authorization: {value}" if value else "Authorization;")
                    self.assertChallenge(r, "test realm")
        self.assertAlive()

    def test_huge_authorization_over_http1(self):
        r = self.get("/hello.txt", "-H", "Authorization: Basic " + "QUFB" * 25_000)  # 100 KB
        self.assertChallenge(r, "test realm")
        # beyond what libh2o reads for a request head (~400 KB), it refuses the request itself
        for size, expect in [(300_000, b"HTTP/1.1 401"), (600_000, None)]:
            with self.subTest(size=size):
                try:
                    out = raw_request(self.server.port(), b"GET /hello.txt HTTP/1.1\r\nHost: main.test\r\n"
                                      b"Connection: close\r\nAuthorization: Basic " + b"QUFB" * (size // 4) + b"\r\n\r\n")
                except (ConnectionResetError, BrokenPipeError):
                    out = b""  # closed while the head was still coming
                if expect is not None:
                    self.assertTrue(out.startswith(expect), out[:100])
                else:
                    self.assertFalse(out.startswith(b"HTTP/1.1 200"), out[:100])
        self.assertAlive()

    def test_two_authorization_headers_get_401(self):
        r = self.get("/hello.txt", "-H", "Authorization: " + basic("alice", "alice-pw"),
                     "-H", "Authorization: " + basic("bob", "bob-pw"))
        self.assertChallenge(r, "test realm")

    def test_raw_garbage_authorization(self):
        port = self.server.port()
        for value in [b"Basic \x00\x01\x02", b"Basic ====", b"Basic =", b"\t\t", b"Basic " + b"/" * 8193]:
            with self.subTest(value=value):
                out = raw_request(port, b"GET /hello.txt HTTP/1.1\r\nHost: main.test\r\nConnection: close\r\n"
                                  b"Authorization: " + value + b"\r\n\r\n")
                self.assertTrue(out.startswith(b"HTTP/1.1 401") or out.startswith(b"HTTP/1.1 400"), out[:200])
        self.assertAlive()

    # ---- credential cache ---------------------------------------------------------------------

    def test_cache_does_not_accept_other_passwords(self):
        self.assertEqual(self.get("/hello.txt", auth=basic("bob", "bob-pw")).status, 200)
        self.assertEqual(self.get("/hello.txt", auth=basic("bob", "bob-pwX")).status, 401)
        self.assertEqual(self.get("/hello.txt", auth=basic("bob", "bob-pw")).status, 200)

    # ---- authorization --------------------------------------------------------------------------

    def test_by_user(self):
        r = self.get("/admin/a.txt")
        self.assertChallenge(r, "test realm")  # anonymous: ask for credentials
        self.assertNotIn(b"admin area", r.body)
        r = self.get("/admin/a.txt", auth=basic("alice", "alice-pw"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"admin area\n")
        r = self.get("/admin/a.txt", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 403, r)
        self.assertIsNone(r.header("www-authenticate"))
        self.assertNotIn(b"admin area", r.body)
        r = self.get("/admin/a.txt", "--http2-prior-knowledge", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 403, r)

    def test_directory_itself_is_covered(self):
        # "/admin/*" also protects "/admin" (which would redirect to "/admin/")
        self.assertChallenge(self.get("/admin"), "test realm")
        self.assertChallenge(self.get("/admin/"), "test realm")
        self.assertChallenge(self.get("/admin/nonexistent"), "test realm")

    def test_encoded_and_dotted_paths_do_not_bypass(self):
        for path in ["/%61dmin/a.txt", "/x/../admin/a.txt", "/./admin/a.txt", "//admin/a.txt", "/admin//a.txt",
                     "/admin/%2e/a.txt", "///admin///a.txt", "/%2fadmin/a.txt", "/admin%2fa.txt"]:
            with self.subTest(path=path):
                r = self.get(path, "--path-as-is")
                self.assertIn(r.status, (401, 404), r)
                self.assertNotIn(b"admin area", r.body)
                r = self.get(path, "--path-as-is", auth=basic("bob", "bob-pw"))
                self.assertIn(r.status, (403, 404), r)
                self.assertNotIn(b"admin area", r.body)

    def test_by_role(self):
        self.assertChallenge(self.get("/staff/s.txt"), "test realm")
        for user in ["dave", "carol"]:
            with self.subTest(user=user):
                r = self.get("/staff/s.txt", auth=basic(user, user + "-pw"))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"staff area\n")
        for user in ["alice", "bob", "erin"]:
            with self.subTest(user=user):
                self.assertEqual(self.get("/staff/s.txt", auth=basic(user, user + "-pw")).status, 403)

    def test_question_mark_is_anonymous(self):
        self.assertChallenge(self.get("/members/m.txt"), "test realm")
        for user in ["alice", "bob"]:
            r = self.get("/members/m.txt", auth=basic(user, user + "-pw"))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"members area\n")

    def test_by_verb(self):
        r = self.get("/readonly/r.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"readonly area\n")
        for verb in ["POST", "PUT", "DELETE"]:
            with self.subTest(verb=verb):
                self.assertChallenge(self.get("/readonly/r.txt", "-X", verb), "test realm")
                r = self.get("/readonly/r.txt", "-X", verb, auth=basic("alice", "alice-pw"))
                self.assertEqual(r.status, 403, r)
        # a verb the rule does not name passes it (the static handler then answers 405 to OPTIONS/PATCH)
        r = self.get("/readonly/r.txt", "-X", "PATCH")
        self.assertNotIn(r.status, (401, 403), r)

    def test_role_and_verb_together(self):
        r = self.get("/editors/e.txt", auth=basic("erin", "erin-pw"))
        self.assertEqual(r.status, 200, r)
        r = self.get("/editors/e.txt", "-I", auth=basic("erin", "erin-pw"))
        self.assertEqual(r.status, 200, r)
        # POST by an editor: the allow rule names GET and HEAD only, the deny rule takes it
        r = self.get("/editors/e.txt", "-X", "POST", auth=basic("erin", "erin-pw"))
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.get("/editors/e.txt", auth=basic("dave", "dave-pw")).status, 403)

    def test_star_is_everyone_and_rule_without_path_is_every_path(self):
        # rules: allow * on /open/*, then deny * everywhere (IIS: "*" = all users, anonymous included)
        r = self.get("/open/o.txt", host="rules.test")
        self.assertEqual(r.status, 200, r)
        r = self.get("/open/o.txt", host="rules.test", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 200, r)
        self.assertChallenge(self.get("/hello.txt", host="rules.test"), "rules")
        self.assertEqual(self.get("/hello.txt", host="rules.test", auth=basic("bob", "bob-pw")).status, 403)

    def test_unmatched_request_is_allowed(self):
        r = self.get("/hello.txt", auth=basic("bob", "bob-pw"))
        self.assertEqual(r.status, 200, r)

    def test_authorization_without_authentication_scheme(self):
        # no scheme to log in with: anonymous is denied with 401 and no challenge
        r = self.get("/admin/a.txt", host="noauth.test")
        self.assertEqual(r.status, 401, r)
        self.assertIsNone(r.header("www-authenticate"))
        self.assertNotIn(b"admin area", r.body)
        self.assertEqual(self.get("/hello.txt", host="noauth.test").status, 200)



class RemoteUserTest(unittest.TestCase):
    """The authenticated user reaches FastCGI and CGI as REMOTE_USER / AUTH_TYPE."""

    def test_remote_user_reaches_fastcgi_and_cgi(self):
        srv = Server("""
            pools:
              echo:
                command: [{apps}/echo_fcgi]
                max_processes: 1
                {worker_user}
            sites:
              s:
                bindings: [http://127.0.0.1:{port:http}]
                root: {dir}/www
                handlers: [{path: "/app/*", pool: echo}, {path: "*.cgi", cgi: true}]
                modules:
                  authentication:
                    anonymous: true
                    basic: {users_file: ../users.htpasswd}
            """, files={"users.htpasswd": "alice:" + openssl_hash("alice-pw", "-6") + "\n",
                        "www/env.cgi": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv\n"})
        os.chmod(srv.path("www/env.cgi"), 0o755)
        with srv:
            for path in ("/app/x", "/env.cgi"):
                r = srv.get(path, "-H", "Authorization: " + basic("alice", "alice-pw"))
                self.assertEqual(r.status, 200, r)
                self.assertIn(b"REMOTE_USER=alice", r.body)
                self.assertIn(b"AUTH_TYPE=Basic", r.body)
                r = srv.get(path)  # anonymous
                self.assertEqual(r.status, 200, r)
                self.assertNotIn(b"REMOTE_USER=", r.body)
            stop_cleanly(srv)


class CredentialCacheTimingTest(unittest.TestCase):
    """One thread, an expensive bcrypt: the first request pays for it, the next ones hit the cache;
    with ttl 0 every request pays."""

    CONF = """
    server:
      threads: 1
    sites:
      cached:
        bindings: ["http://127.0.0.1:{port:http}:cached.test"]
        root: {dir}/www
        modules:
          authentication:
            anonymous: false
            basic: {users_file: ../users.htpasswd}
            credential_cache: {ttl: 60s}
      uncached:
        bindings: ["http://127.0.0.1:{port:http}:uncached.test"]
        root: {dir}/www
        modules:
          authentication:
            anonymous: false
            basic: {users_file: ../users.htpasswd}
            credential_cache: {ttl: 0s}
    """

    def test_cache_skips_bcrypt(self):
        files = {"www/hello.txt": "hello\n", "users.htpasswd": f"slow:{bcrypt_hash('slow-pw', cost=12)}\n"}
        server = Server(self.CONF, files)
        self.addCleanup(server.cleanup)
        self.addCleanup(stop_cleanly, server)
        server.start()
        port = server.port()

        def timed(host):
            start = time.monotonic()
            r = curl(f"http://{host}:{port}/hello.txt", "--resolve", f"{host}:{port}:127.0.0.1",
                     "-H", "Authorization: " + basic("slow", "slow-pw"))
            self.assertEqual(r.status, 200, r)
            return time.monotonic() - start

        first = timed("cached.test")
        later = min(timed("cached.test") for _ in range(3))
        uncached = min(timed("uncached.test") for _ in range(2))
        self.assertGreater(first, 0.05, "bcrypt cost 12 should take a while")
        self.assertLess(later, first / 2, (first, later))
        self.assertGreater(uncached, later * 2, (uncached, later))


class FileChangeTest(unittest.TestCase):
    """Users and groups files are watched: a deleted user, a changed password, an added user, a
    changed group membership take effect without a reload, with and without the credential cache,
    over HTTP/1.1 and h2.  A file that becomes missing or malformed fails closed."""

    CONF = """
    server:
      threads: 2
    sites:
      cached:
        bindings: ["http://127.0.0.1:{port:http}:cached.test"]
        root: {dir}/www
        http2: true
        modules:
          authentication:
            anonymous: false
            basic: {realm: r, users_file: ../users.htpasswd}
            groups_file: ../groups.txt
            credential_cache: {ttl: 10m}
          authorization: &authz
            - {path: "/staff/*", allow: {roles: [staff]}}
            - {path: "/staff/*", deny: {users: ["*"]}}
            - {path: "/banned/*", deny: {roles: [banned]}}
      uncached:
        bindings: ["http://127.0.0.1:{port:http}:uncached.test"]
        root: {dir}/www
        http2: true
        modules:
          authentication:
            anonymous: false
            basic: {realm: r, users_file: ../users.htpasswd}
            groups_file: ../groups.txt
            credential_cache: {ttl: 0s}
          authorization: *authz
    """
    HOSTS = ("cached.test", "uncached.test")
    PROTOCOLS = ((), ("--http2-prior-knowledge",))

    @classmethod
    def setUpClass(cls):
        cls.hashes = {"alice": bcrypt_hash("alice-pw"), "bob": openssl_hash("bob-pw", "-6"), "bob2": bcrypt_hash("bob-new"),
                      "bob3": bcrypt_hash("bob-old"), "carol": openssl_hash("carol-pw", "-5"), "dave": bcrypt_hash("dave-pw")}
        files = {"www/hello.txt": "hello\n", "www/staff/s.txt": "staff\n", "www/banned/b.txt": "not banned\n"}
        cls.server = Server(cls.CONF, files)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        cls.write_baseline()
        cls.server.start()

    @classmethod
    def write_baseline(cls):
        h = cls.hashes
        cls.server.write("users.htpasswd", f"alice:{h['alice']}\nbob:{h['bob']}\ndave:{h['dave']}\n")
        cls.server.write("groups.txt", "staff: dave\nbanned: nobody\n")

    def setUp(self):
        self.write_baseline()
        self.wait_for("alice", "alice-pw", 200)
        self.wait_for("dave", "dave-pw", 200, "/staff/s.txt")
        self.wait_for("bob", "bob-pw", 200)
        self.wait_for("carol", "carol-pw", 401)

    def get(self, host, user, password, path="/hello.txt", proto=()):
        port = self.server.port()
        return curl(f"http://{host}:{port}{path}", "--resolve", f"{host}:{port}:127.0.0.1", *proto,
                    "-H", "Authorization: " + basic(user, password))

    def statuses(self, user, password, path="/hello.txt"):
        return {(host, bool(proto)): self.get(host, user, password, path, proto).status
                for host in self.HOSTS for proto in self.PROTOCOLS}

    def wait_for(self, user, password, status, path="/hello.txt"):
        """Every site and protocol answers `status`: the change is in effect (no reload happens)."""
        want = {(host, bool(proto)): status for host in self.HOSTS for proto in self.PROTOCOLS}
        last = {}

        def in_effect():
            last.update(self.statuses(user, password, path))
            return last == want
        try:
            h2ptest.wait_until(in_effect, timeout=15, interval=0.05, what=f"{user} on {path} to get {status}")
        except AssertionError:
            self.fail(f"{user} on {path}: {last}, want {status}\n" + self.server.read_log()[-3000:])

    def replace_file(self, name, content):
        """As `htpasswd` and editors that save atomically do: a new file renamed over the old one."""
        tmp = self.server.write(name + ".new", content)
        os.replace(tmp, self.server.path(name))

    def assert_no_reload(self):
        self.assertNotIn("configuration reloaded", self.server.read_log())
        self.assertIsNone(self.server.proc.poll(), "h2pool died")

    def test_deleted_user_loses_access_at_once(self):
        h = self.hashes
        for _ in range(2):  # the second request of each is served from the credential cache
            self.statuses("alice", "alice-pw")
        self.server.write("users.htpasswd", f"bob:{h['bob']}\ndave:{h['dave']}\n")  # rewritten in place
        self.wait_for("alice", "alice-pw", 401)
        self.wait_for("bob", "bob-pw", 200)
        h2ptest.log_shows(self.server, "changed: 2 users")
        self.assert_no_reload()

    def test_deleted_user_with_the_file_replaced(self):
        h = self.hashes
        self.statuses("alice", "alice-pw")
        self.replace_file("users.htpasswd", f"bob:{h['bob']}\ndave:{h['dave']}\n")
        self.wait_for("alice", "alice-pw", 401)
        self.wait_for("bob", "bob-pw", 200)
        self.assert_no_reload()

    def test_changed_password(self):
        h = self.hashes
        self.server.write("users.htpasswd", f"alice:{h['alice']}\nbob:{h['bob3']}\ndave:{h['dave']}\n")
        self.wait_for("bob", "bob-pw", 401)
        self.wait_for("bob", "bob-old", 200)
        self.statuses("bob", "bob-old")  # cached now
        # a hash of the same length, written at once: the same size, maybe the same timestamp tick
        self.server.write("users.htpasswd", f"alice:{h['alice']}\nbob:{h['bob2']}\ndave:{h['dave']}\n")
        self.wait_for("bob", "bob-old", 401)
        self.wait_for("bob", "bob-new", 200)
        self.wait_for("alice", "alice-pw", 200)
        self.assert_no_reload()

    def test_added_user(self):
        h = self.hashes
        self.statuses("carol", "carol-pw")
        self.replace_file("users.htpasswd", f"alice:{h['alice']}\nbob:{h['bob']}\ncarol:{h['carol']}\ndave:{h['dave']}\n")
        self.wait_for("carol", "carol-pw", 200)
        self.assert_no_reload()

    def test_group_membership_removed_and_added(self):
        self.server.write("groups.txt", "staff: bob\nbanned: nobody\n")
        self.wait_for("dave", "dave-pw", 403, "/staff/s.txt")
        self.wait_for("bob", "bob-pw", 200, "/staff/s.txt")
        self.wait_for("dave", "dave-pw", 200, "/banned/b.txt")
        self.replace_file("groups.txt", "staff: bob\nbanned: dave\n")
        self.wait_for("dave", "dave-pw", 403, "/banned/b.txt")
        self.wait_for("alice", "alice-pw", 200, "/banned/b.txt")
        self.server.write("groups.txt", "# no groups at all\n")
        self.wait_for("bob", "bob-pw", 403, "/staff/s.txt")
        self.wait_for("dave", "dave-pw", 200, "/banned/b.txt")
        self.assert_no_reload()

    def test_malformed_or_missing_users_file_fails_closed(self):
        h = self.hashes
        self.statuses("alice", "alice-pw")
        broken = [("malformed", f"alice:{h['alice']}\nbob:$2y$05$truncated\n"), ("weak hash", "alice:$apr1$abc$def\n"),
                  ("not text", "alice\0:x\n"), ("missing", None), ("unreadable", "")]
        for what, content in broken:
            with self.subTest(what=what):
                if content is None:
                    os.unlink(self.server.path("users.htpasswd"))
                elif what == "unreadable":
                    if os.geteuid() == 0:
                        continue  # root reads it anyway
                    os.chmod(self.server.path("users.htpasswd"), 0)
                else:
                    # written aside and renamed: the watcher never sees a half-written (empty, valid) file
                    self.server.write("users.htpasswd.new", content)
                    os.replace(self.server.path("users.htpasswd.new"), self.server.path("users.htpasswd"))
                self.wait_for("alice", "alice-pw", 401)
                self.wait_for("dave", "dave-pw", 401, "/staff/s.txt")
                h2ptest.log_shows(self.server, "no credentials are accepted until it is fixed")
                if what == "unreadable":
                    os.chmod(self.server.path("users.htpasswd"), 0o644)
                self.write_baseline()
                self.wait_for("alice", "alice-pw", 200)
        self.assert_no_reload()

    def test_work_factor_above_the_cap_fails_closed(self):
        """A live change that brings a hash above the cap makes the file unusable, like a malformed one."""
        h = self.hashes
        for hash_, reason in ABOVE_THE_CAP:
            with self.subTest(reason=reason):
                # written aside and renamed: the watcher never sees a half-written (empty, valid) file
                self.replace_file("users.htpasswd", f"alice:{h['alice']}\nbob:{hash_}\ndave:{h['dave']}\n")
                self.wait_for("alice", "alice-pw", 401)
                self.wait_for("dave", "dave-pw", 401, "/staff/s.txt")
                h2ptest.log_shows(self.server, re.escape(f'users.htpasswd:2: user "bob": {reason}'))
                h2ptest.log_shows(self.server, "no credentials are accepted until it is fixed")
                self.write_baseline()
                self.wait_for("alice", "alice-pw", 200)
        self.assert_no_reload()

    def test_malformed_or_missing_groups_file_fails_closed(self):
        for what in ("malformed", "missing"):
            with self.subTest(what=what):
                if what == "missing":
                    os.unlink(self.server.path("groups.txt"))
                else:
                    self.replace_file("groups.txt", "staff dave\n")
                # a decision that needs a membership is denied; the others are not
                self.wait_for("dave", "dave-pw", 403, "/staff/s.txt")
                self.wait_for("alice", "alice-pw", 403, "/banned/b.txt")
                self.wait_for("alice", "alice-pw", 200, "/hello.txt")
                h2ptest.log_shows(self.server, "requests that need a group membership are denied")
                self.write_baseline()
                self.wait_for("dave", "dave-pw", 200, "/staff/s.txt")
                self.wait_for("alice", "alice-pw", 200, "/banned/b.txt")
        self.assert_no_reload()


class AuthConfigErrorTest(unittest.TestCase):
    """A users or groups file that cannot be used refuses the configuration, naming the file and line."""

    CONF = """
    sites:
      s:
        bindings: ["http://127.0.0.1:{port:http}"]
        root: {dir}/www
        modules:
          authentication:
            basic: {users_file: ../users.htpasswd}
            groups_file: ../groups.txt
          authorization:
            - {allow: {roles: [admins]}}
    """

    def start_failing(self, users, groups="admins: alice\n", conf=None):
        files = {"www/hello.txt": "hello\n", "users.htpasswd": users, "groups.txt": groups}
        server = Server(conf or self.CONF, files, expect_start=False)
        self.addCleanup(server.cleanup)
        server.start()
        self.assertNotEqual(server.proc.wait(30), 0)
        log = server.read_log()
        self.assertIsNone(SANITIZER_REPORT.search(log), log)
        return log

    def test_legacy_hash_is_refused(self):
        log = self.start_failing("alice:" + bcrypt_hash("x") + "\nbob:" + openssl_hash("x", "-1") + "\n")
        self.assertIn("users.htpasswd:2:", log)
        self.assertIn('user "bob"', log)
        self.assertIn("MD5", log)

    def test_plain_password_is_refused(self):
        log = self.start_failing("alice:secret\n")
        self.assertIn("users.htpasswd:1:", log)
        self.assertIn("plain-text", log)
        self.assertNotIn("secret", log.replace("plain-text", ""))

    def users_file_line(self, server):
        with open(server.path("conf.d/h2pool.yaml")) as f:
            return next(n for n, line in enumerate(f, 1) if "users_file" in line)

    def test_work_factor_above_the_cap_is_refused(self):
        """At start and by -t, with the line of the YAML file that names the users file."""
        for hash_, reason in ABOVE_THE_CAP:
            with self.subTest(reason=reason):
                files = {"www/hello.txt": "hello\n", "groups.txt": "admins: alice\n",
                         "users.htpasswd": "alice:" + bcrypt_hash("x") + "\nbob:" + hash_ + "\n"}
                server = Server(self.CONF, files, expect_start=False)
                self.addCleanup(server.cleanup)
                want = re.compile(rf"h2pool\.yaml:{self.users_file_line(server)}:\d+: .*users_file: \S*users\.htpasswd:2: "
                                  rf'user "bob": {re.escape(reason)}')
                checked = h2ptest.run_h2pool("-t", "-c", server.conf)
                self.assertEqual(checked.returncode, 1, checked)
                self.assertRegex(checked.stderr, want)
                self.assertNotIn("configuration OK", checked.stdout)
                server.start()
                self.assertNotEqual(server.proc.wait(30), 0)
                log = server.read_log()
                self.assertRegex(log, want)
                self.assertIsNone(SANITIZER_REPORT.search(log), log)

    def test_work_factor_at_the_cap_is_accepted(self):
        files = {"www/hello.txt": "hello\n", "groups.txt": "admins: alice\n",
                 "users.htpasswd": "alice:" + bcrypt_hash("x", cost=12) + "\n"
                                   "bob:$6$rounds=1000000$saltsalt$" + "A" * 86 + "\n"}
        server = Server(self.CONF, files, expect_start=False)
        self.addCleanup(server.cleanup)
        checked = h2ptest.run_h2pool("-t", "-c", server.conf)
        self.assertEqual((checked.returncode, checked.stdout.strip()), (0, "configuration OK"), checked)

    def test_t_reads_users_and_groups_files(self):
        """-t says what the start would: a legacy hash, a broken groups file."""
        for users, groups, where in (("alice:" + openssl_hash("x", "-1") + "\n", "admins: alice\n", "users.htpasswd:1:"),
                                     ("alice:" + bcrypt_hash("x") + "\n", "admins alice\n", "groups.txt:1:")):
            with self.subTest(where=where):
                server = Server(self.CONF, {"www/hello.txt": "hello\n", "users.htpasswd": users, "groups.txt": groups})
                self.addCleanup(server.cleanup)
                checked = h2ptest.run_h2pool("-t", "-c", server.conf)
                self.assertEqual(checked.returncode, 1, checked)
                self.assertRegex(checked.stderr, r"h2pool\.yaml:\d+:\d+: sites\.s\.modules\.authentication\.[\w.]+: \S*" + where)

    def test_missing_users_file(self):
        conf = self.CONF.replace("../users.htpasswd", "../missing.htpasswd")
        files = {"www/hello.txt": "hello\n", "groups.txt": "admins: alice\n"}
        server = Server(conf, files, expect_start=False)
        self.addCleanup(server.cleanup)
        server.start()
        self.assertNotEqual(server.proc.wait(30), 0)
        log = server.read_log()
        self.assertIn("missing.htpasswd", log)
        self.assertIsNone(SANITIZER_REPORT.search(log), log)

    def test_bad_groups_file(self):
        log = self.start_failing("alice:" + bcrypt_hash("x") + "\n", groups="admins alice\n")
        self.assertIn("groups.txt:1:", log)

    def test_roles_without_groups_file(self):
        conf = self.CONF.replace("            groups_file: ../groups.txt\n", "")
        log = self.start_failing("alice:" + bcrypt_hash("x") + "\n", conf=conf)
        self.assertIn("groups_file", log)


if __name__ == "__main__":
    h2ptest.main()
