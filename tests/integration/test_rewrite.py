"""URL rewrite: front controllers and pretty URLs, with a real php-cgi pool.

tests/apps/php/router.php is a front controller that prints what it received (REQUEST_URI,
SCRIPT_NAME, QUERY_STRING, PATH_INFO, $_GET), so each test checks the CGI contract PHP
frameworks rely on: the rewritten script runs, the client's URI stays in REQUEST_URI.
"""
import json
import os
import shutil
import unittest

from h2ptest import PHP_APPS, Server, curl, main

with open(os.path.join(PHP_APPS, "router.php")) as f:
    ROUTER = f.read()

CONFIG = """
pools:
  php:
    command: [php-cgi]
    max_processes: 2
    {worker_user}
sites:
  app:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    default_documents: [index.php, index.html]
    handlers:
      - {path: "*.php", pool: php}
    applications:
      /blog: {root: {dir}/blog}
    modules:
      redirect:
        - {from: /old-post/*, to: /post/$1, status: 301}
      rewrite:
        - {match: "^/post/([0-9]+)$", to: "/router.php?id=$1"}
        - {match: "^/wiki/(.*)$", to: "/router.php?title=$1"}
        - {match: "^/api/(v[0-9])/(.*)$", to: "/router.php/$2?version=$1"}
        - {match: "^/esc/(.*)$", to: "/static/$1"}
        - {match: "^/admin-panel$", to: "/admin/secret.php"}
        - {match: "^/b/(.*)$", to: "/blog/$1"}
        - {match: "^/(?!blog/).*", unless: [file, directory], to: /router.php}
      authorization:
        - {path: "/admin/*", deny: {users: ["*"]}}
"""

FILES = {
    "www/router.php": ROUTER,
    "www/static/style.css": "body{}\n",
    "www/dir/index.html": "dir index\n",
    "www/admin/secret.php": '<?php echo "secret admin";\n',
    "blog/entry.php": '<?php echo "blog entry ", $_SERVER["SCRIPT_NAME"];\n',
}


class RewriteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("php-cgi") is None:
            raise unittest.SkipTest("php-cgi not available")
        cls.server = Server(CONFIG, FILES).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def get(self, path, *args):
        return curl(self.server.url(path), "--path-as-is", *args)

    def routed(self, path, *args):
        r = self.get(path, *args)
        self.assertEqual(r.status, 200, r)
        return json.loads(r.body)

    def test_front_controller_gets_pretty_urls(self):
        for proto in ((), ("--http2-prior-knowledge",)):
            with self.subTest(proto=proto):
                got = self.routed("/hello-world", *proto)
                self.assertEqual(got["REQUEST_URI"], "/hello-world")
                self.assertEqual(got["SCRIPT_NAME"], "/router.php")
                self.assertTrue(got["SCRIPT_FILENAME"].endswith("/www/router.php"))
                self.assertEqual(got["QUERY_STRING"], "")
                self.assertIn(got["PATH_INFO"], (None, ""))
                got = self.routed("/2024/05/a-post/?a=1&b=2", *proto)
                self.assertEqual(got["REQUEST_URI"], "/2024/05/a-post/?a=1&b=2")
                self.assertEqual((got["QUERY_STRING"], got["GET"]), ("a=1&b=2", {"a": "1", "b": "2"}))

    def test_captures_and_query_merging(self):
        got = self.routed("/post/42?x=y")
        self.assertEqual((got["REQUEST_URI"], got["QUERY_STRING"]), ("/post/42?x=y", "id=42&x=y"))
        self.assertEqual(got["GET"], {"id": "42", "x": "y"})
        got = self.routed("/wiki/Main%20Page")
        self.assertEqual(got["GET"], {"title": "Main Page"})
        self.assertEqual(got["REQUEST_URI"], "/wiki/Main%20Page")

    def test_a_capture_cannot_add_query_parameters(self):
        # "&", "=", "#", "?" captured from the path stay inside the one parameter
        got = self.routed("/wiki/a%26admin%3D1%3Fx%23y")
        self.assertEqual(got["GET"], {"title": "a&admin=1?x#y"})

    def test_path_info_after_a_rewrite(self):
        got = self.routed("/api/v2/users/7?full=1")
        self.assertEqual((got["SCRIPT_NAME"], got["PATH_INFO"]), ("/router.php", "/users/7"))
        self.assertEqual(got["QUERY_STRING"], "version=v2&full=1")
        self.assertEqual(got["REQUEST_URI"], "/api/v2/users/7?full=1")

    def test_existing_files_and_directories_are_served_directly(self):
        r = self.get("/static/style.css")
        self.assertEqual((r.status, r.body), (200, b"body{}\n"))
        r = self.get("/dir/")
        self.assertEqual((r.status, r.body), (200, b"dir index\n"))
        self.assertEqual(self.get("/dir").status, 301)  # a directory: not rewritten, the slash is added

    def test_the_applications_own_404(self):
        r = self.get("/missing-page")
        self.assertEqual(r.status, 404)
        self.assertEqual(json.loads(r.body), {"error": "no such page: /missing-page"})

    def test_a_capture_cannot_walk_out(self):
        for path in ("/esc/..%252f..%252fetc%252fpasswd", "/esc/%2e%2e/%2e%2e/etc/passwd", "/esc/..%5c..%5cetc%5cpasswd",
                     "/esc/style.css%00.php"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertNotIn(b"root:", r.body)
                self.assertIn(r.status, (400, 404), r)
        self.assertEqual(self.get("/esc/style.css").body, b"body{}\n")

    def test_a_rewrite_into_a_denied_path_is_denied(self):
        for proto in ((), ("--http2-prior-knowledge",)):
            r = self.get("/admin-panel", *proto)
            self.assertEqual(r.status, 401, r)
            self.assertNotIn(b"secret admin", r.body)

    def test_redirect_sees_the_url_the_client_sent(self):
        r = self.get("/old-post/7")
        self.assertEqual((r.status, r.header("location")), (301, "/post/7"))

    def test_a_rewrite_into_another_application(self):
        r = self.get("/b/entry.php")
        self.assertEqual((r.status, r.body), (200, b"blog entry /blog/entry.php"))

    def test_post_reaches_the_front_controller(self):
        r = self.get("/form", "--data", "a=1")
        got = json.loads(r.body)
        self.assertEqual((r.status, got["REQUEST_METHOD"], got["SCRIPT_NAME"]), (200, "POST", "/router.php"))


if __name__ == "__main__":
    main()
