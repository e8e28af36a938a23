"""Security: a decision about access is taken on the resource actually served.

Real h2pool, real php-cgi and a libfcgi C app.  Each test is an attack a client could try
against a site where somebody can upload files: it must neither run the upload, nor show
source or server files, nor walk around an authorization or filtering rule.
"""
import os
import shutil
import unittest

from h2ptest import Server, curl, main, raw_request

PWNED = b"PWNED-" + b"42"  # the marker only an executed upload prints (the source has "PWNED-" . "42")
EVIL = '<?php echo "PWNED-" . "42"; ?>\n'
SECRET_SRC = "<?php $db_password = 'hunter2'; echo 'config loaded';\n"

CONFIG = """
pools:
  php:
    command: [php-cgi]
    env: {PHP_FCGI_MAX_REQUESTS: "0"}
    max_processes: 2
    {worker_user}
  capp:
    command: [{apps}/hello_fcgi]
    max_processes: 1
    {worker_user}
sites:
  open:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    default_documents: [index.php, index.html]
    handlers:
      - {path: "*.php", pool: php}
      - {path: "/app/*", pool: capp}
      - {path: "/php-dir/*", pool: php, resource: file}
      - {path: "/dirs/*", pool: capp, resource: directory}
      - {path: "/cgi-bin/*.cgi", cgi: true}
    locations:
      /upload:
        modules:
          request_filtering: {file_extensions: {deny: [.php, .phtml]}}
      /allow:
        modules:
          request_filtering: {file_extensions: {allow: [.txt, .html]}}
      /custom:
        modules:
          request_filtering: {hidden_segments: ["!.ht*", secret*]}
  guarded:
    bindings: [http://127.0.0.1:{port:guarded}]
    root: {dir}/www
    default_documents: [index.php, index.html]
    handlers:
      - {path: "*.php", pool: php}
    modules:
      authorization:
        - {path: "*.php", deny: {users: ["?"]}}
"""

FILES = {
    "www/index.html": "home\n",
    "www/img/evil.jpg": EVIL,
    "www/img/photo.jpg": "JPEG\n",
    "www/.config.php": SECRET_SRC,
    "www/sub/.x.php": SECRET_SRC,
    "www/.htaccess": "RewriteRule . /index.php [L]\n",
    "www/.htpasswd": "admin:$apr1$x$y\n",
    "www/sub/.htaccess": "Deny from all\n",
    "www/.git/config": "[core]\n",
    "www/.git/HEAD": "ref: refs/heads/main\n",
    "www/.gitignore": "*.log\n",
    "www/.env": "DB_PASSWORD=hunter2\n",
    "www/.env.local": "DB_PASSWORD=hunter2\n",
    "www/.user.ini": "memory_limit = 64M\n",
    "www/.svn/entries": "12\n",
    "www/.hg/hgrc": "[paths]\n",
    "www/.well-known/acme-challenge/token": "acme-token\n",
    "www/.well-known/security.txt": "Contact: x\n",
    "www/upload/shell.php": EVIL,
    "www/upload/shell.phtml": EVIL,
    "www/upload/ok.txt": "ok\n",
    "www/allow/shell.php": EVIL,
    "www/allow/a.txt": "a\n",
    "www/custom/.htaccess": "custom htaccess\n",
    "www/custom/secret-notes": "secret\n",
    "www/admin.php": '<?php echo "admin area";\n',
    "www/protected/index.php": '<?php echo "protected index";\n',
    "www/php-dir/evil.jpg": EVIL,
    "www/dirs/d/.keep": "",
    "www/dirs/f": "a file\n",
    "www/app.php.d/x.php": EVIL,
}


class ScriptMappingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("php-cgi") is None:
            raise unittest.SkipTest("php-cgi not available")
        cls.server = Server(CONFIG, FILES).start()
        os.makedirs(cls.server.path("www/cgi-bin"), exist_ok=True)
        cls.server.write("www/cgi-bin/evil.txt", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho PWNED-42\n", 0o755)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def get(self, path, *args, site="http"):
        return curl(self.server.url(path, site), "--path-as-is", *args)

    def assert_not_run(self, path, statuses=(404,), *args):
        r = self.get(path, *args)
        self.assertNotIn(PWNED, r.body, f"{path} ran an upload: {r}")
        self.assertNotIn(b"hunter2", r.body, f"{path} showed a secret: {r}")
        self.assertIn(r.status, statuses, f"{path}: {r}")
        return r

    # ---- uploads never run as scripts ---------------------------------------------------------

    def test_upload_with_script_suffix_in_path_info_is_not_run(self):
        for path in ("/img/evil.jpg/x.php", "/img/evil.jpg/.php", "/img/evil.jpg/x.php/y", "/img/evil.jpg/index.php",
                     "//img/evil.jpg/x.php", "/img//evil.jpg/x.php", "/img/./evil.jpg/x.php", "/img/evil.jpg%2fx.php",
                     "/img/evil.jpg%2Fx.php", "/img/%65vil.jpg/x.php", "/img/evil.jpg/x.php%00.jpg", "/img/evil.jpg/%2e.php",
                     "/img/evil.jpg/a/b/c.php", "/img/evil.jpg/x.php?a=b", "/img/evil.jpg/x.php#frag"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(path=path, proto=proto):
                    self.assert_not_run(path, (400, 404), *proto)
        # the image itself is a plain file
        r = self.get("/img/evil.jpg")
        self.assertEqual(r.status, 200)
        self.assertNotIn(PWNED, r.body)

    def test_path_pattern_with_resource_file_needs_a_file(self):
        # "/php-dir/*" with resource: file: whatever exists there is PHP (the admin said so), nothing else is
        for path in ("/php-dir/nothing", "/php-dir/nothing/x.php", "/php-dir/", "/php-dir/evil.jpg.d/x"):
            with self.subTest(path=path):
                self.assert_not_run(path, (403, 404))
        self.assertIn(PWNED, self.get("/php-dir/evil.jpg").body)

    def test_a_directory_named_like_a_script_is_not_a_script(self):
        self.assert_not_run("/app.php.d/", (403, 404))
        # but a real script inside it is one
        self.assertIn(PWNED, self.get("/app.php.d/x.php").body)

    def test_cgi_mapping_needs_the_script_file(self):
        for path in ("/cgi-bin/evil.txt/x.cgi", "/cgi-bin/evil.txt/.cgi", "/cgi-bin/x.cgi"):
            with self.subTest(path=path):
                self.assert_not_run(path)

    def test_url_patterns_reach_applications_without_files(self):
        # "/app/*" names no file: the C app routes URLs itself (resource unspecified by default)
        for path in ("/app/hello", "/app/any/thing", "/app/x.y"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 200, r)
                self.assertIn(b"hello", r.body.lower())

    def test_resource_directory(self):
        self.assertEqual(self.get("/dirs/d/x").status, 200)  # the directory exists: the app takes it
        self.assertEqual(self.get("/dirs/f").status, 200)  # a file: the static handler serves it
        self.assertEqual(self.get("/dirs/f").body, b"a file\n")
        self.assertEqual(self.get("/dirs/none").status, 404)

    # ---- no source, no server files -------------------------------------------------------------

    def test_dotfile_scripts_run_and_never_show_source(self):
        for path in ("/.config.php", "/sub/.x.php", "/.config.php/info", "//.config.php"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(path=path, proto=proto):
                    r = self.get(path, *proto)
                    self.assertEqual((r.status, r.body), (200, b"config loaded"), r)  # run by PHP, not sent

    def test_server_files_are_hidden(self):
        for path in ("/.htaccess", "/.HTACCESS", "/.htpasswd", "/sub/.htaccess", "/.htaccess.", "/.htaccess;x",
                     "/%2ehtaccess", "/%2Ehtaccess", "/.ht%61ccess", "/.git/config", "/.git/HEAD", "/.git/", "/.GIT/config",
                     "/.gitignore", "/.env", "/.env.local", "/.ENV", "/.user.ini", "/.svn/entries", "/.hg/hgrc",
                     "/sub/../.htaccess", "/img/..%2f.htaccess"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(path=path, proto=proto):
                    r = self.get(path, *proto)
                    self.assertEqual(r.status, 404, r)
                    for secret in (b"RewriteRule", b"hunter2", b"[core]", b"refs/heads", b"memory_limit", b"$apr1"):
                        self.assertNotIn(secret, r.body)

    def test_well_known_stays_reachable(self):
        self.assertEqual(self.get("/.well-known/acme-challenge/token").body, b"acme-token\n")
        self.assertEqual(self.get("/.well-known/security.txt").status, 200)

    def test_a_site_can_change_the_hidden_list(self):
        self.assertEqual(self.get("/custom/.htaccess").body, b"custom htaccess\n")  # "!.ht*" took it off
        self.assertEqual(self.get("/custom/secret-notes").status, 404)  # "secret*" added
        self.assertEqual(self.get("/custom/.git/config").status, 404)  # the rest of the defaults stay

    # ---- file_extensions looks at every segment that could be the script ----------------------

    def test_denied_extension_cannot_hide_behind_path_info(self):
        for path in ("/upload/shell.php", "/upload/shell.php/x", "/upload/shell.php/x.txt", "/upload/shell.php/",
                     "/upload/shell.php./x", "/upload/shell.php;/x", "/upload/shell.php%2fx", "/upload/shell.PHP/x",
                     "/upload/shell.phtml/x", "/upload//shell.php/x", "/upload/shell.php/a/b/c.jpg"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(path=path, proto=proto):
                    self.assert_not_run(path, (404,), "-u", "u:p", *proto)
        self.assertEqual(self.get("/upload/ok.txt").body, b"ok\n")

    def test_allowlist_applies_to_the_script(self):
        for path in ("/allow/shell.php/a.txt", "/allow/shell.php/a.html", "/allow/shell.php"):
            with self.subTest(path=path):
                self.assert_not_run(path, (404,), "-u", "u:p")
        self.assertEqual(self.get("/allow/a.txt").body, b"a\n")

    # ---- authorization decides on the resource served -----------------------------------------

    def test_authorization_sees_default_document_and_script(self):
        for path in ("/admin.php", "/admin.php/x", "/admin.php/x.html", "/admin.php/", "//admin.php", "/admin.php?x=1",
                     "/protected/", "/protected//", "/protected/index.php/extra", "/./admin.php", "/admin.ph%70/x"):
            for proto in ((), ("--http2-prior-knowledge",)):
                with self.subTest(path=path, proto=proto):
                    r = self.get(path, *proto, site="guarded")
                    self.assertEqual(r.status, 401, r)
                    self.assertNotIn(b"admin area", r.body)
                    self.assertNotIn(b"protected index", r.body)
        # "/" is index.html here: not PHP, not denied
        self.assertEqual(self.get("/", site="guarded").body, b"home\n")
        # without the rule, the same URLs reach the scripts
        self.assertEqual(self.get("/admin.php/x").body, b"admin area")
        self.assertEqual(self.get("/protected/").body, b"protected index")


class SymlinkVerdictPerApplicationTest(unittest.TestCase):
    """Whether a path leads out of the root depends on the application's root: a symlink in
    /srv/www/b to ../admin/ is inside the `/` application's root and outside that of `/b-app`
    (root /srv/www/b).  Asked for both in one turn of the server's loop (pipelined, so one read),
    the second must not reuse the first's answer and run a script outside its application."""

    CONF = """
    pools:
      php:
        command: [php-cgi]
        env: {PHP_FCGI_MAX_REQUESTS: "0"}
        max_processes: 1
        {worker_user}
    sites:
      s:
        bindings: [http://127.0.0.1:{port:http}]
        root: {dir}/www
        handlers:
          - {path: "*.php", pool: php}
        applications:
          /b-app: {root: {dir}/www/b}
    """

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONF, {"www/admin/secret.php": EVIL, "www/admin/secret.txt": "top secret\n",
                                       "www/b/ok.txt": "ok\n"})
        cls.addClassCleanup(cls.server.cleanup)
        cls.server.start()
        www = cls.server.path("www")
        os.symlink("../admin/secret.php", os.path.join(www, "b/x.php"))         # the file
        os.symlink("../admin", os.path.join(www, "b/adm"))                       # a directory
        os.symlink(os.path.join(www, "admin/secret.php"), os.path.join(www, "b/abs.php"))  # absolute

    def pipelined(self, *paths):
        data = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (p.encode(), b"Connection: close\r\n" if i == len(paths) - 1 else b"")
                        for i, p in enumerate(paths))
        return raw_request(self.server.port(), data)

    def test_the_second_application_gets_its_own_answer(self):
        for inside, outside in [("/b/x.php", "/b-app/x.php"), ("/b/adm/secret.php", "/b-app/adm/secret.php"),
                                ("/b/abs.php", "/b-app/abs.php"), ("/b/adm/secret.txt", "/b-app/adm/secret.txt")]:
            with self.subTest(outside=outside):
                # alone, the way out of /b-app's root is refused
                self.assertIn(curl(self.server.url(outside)).status, (403, 404))
                for _ in range(3):  # (the same loop turn each time: one read holds both)
                    answer = self.pipelined(inside, outside, inside, outside)
                    heads = [b.split(b"\r\n", 1)[0] for b in answer.split(b"HTTP/1.1 ")[1:]]
                    self.assertEqual(len(heads), 4, answer[:500])
                    for i, head in enumerate(heads):
                        if i % 2 == 1:
                            self.assertRegex(head, rb"^(403|404) ", answer[:2000])
                    self.assertEqual(answer.count(PWNED) + answer.count(b"top secret"), 2, answer[:2000])


if __name__ == "__main__":
    main()
