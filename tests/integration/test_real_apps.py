"""Real PHP applications from Debian's archive behind h2pool, with pretty URLs through rewrite.

DokuWiki (package `dokuwiki`) with `userewrite = 1`: its .htaccess rules mapped onto the
rewrite module, exactly as the README's recipe writes them.  The installed tree is copied into
the test directory (with its configuration and data) so the test changes nothing on the system.
"""
import os
import re
import shutil
import subprocess
import unittest

from h2ptest import Server, curl, main

DOKUWIKI = "/usr/share/dokuwiki"

CONFIG = """
pools:
  php:
    command: [php-cgi]
    max_processes: 2
    {pool_user}
sites:
  wiki:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    default_documents: [doku.php]
    handlers:
      - {path: "*.php", pool: php}
    modules:
      request_filtering: {hidden_segments: [VERSION, README, COPYING]}
      rewrite:
        - {match: "^/_media/(.*)", to: "/lib/exe/fetch.php?media=$1"}
        - {match: "^/_detail/(.*)", to: "/lib/exe/detail.php?media=$1"}
        - {match: "^/_export/([^/]+)/(.*)", to: "/doku.php?do=export_$1&id=$2"}
        - {match: "^/index.php$", to: "/doku.php"}
        - {match: "^/(.+)", unless: [file, directory], to: "/doku.php?id=$1"}
"""


@unittest.skipUnless(os.path.isdir(DOKUWIKI), "dokuwiki is not installed (scripts/deps.sh installs it)")
class DokuWikiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        root = os.geteuid() == 0
        cls.server = Server(CONFIG.replace("{pool_user}", "user: www-data" if root else ""))
        d = cls.server.dir
        subprocess.run(["cp", "-rL", DOKUWIKI, os.path.join(d, "www")], check=True)
        subprocess.run(["cp", "-rL", "/etc/dokuwiki", os.path.join(d, "conf")], check=True)
        subprocess.run(["cp", "-r", "/var/lib/dokuwiki/data", os.path.join(d, "data")], check=True)
        cls.server.write("www/inc/preload.php", f"<?php\nif (!defined('DOKU_CONF')) define('DOKU_CONF', '{d}/conf/');\n")
        with open(os.path.join(d, "conf/local.php"), "a") as f:
            f.write(f"$conf['savedir'] = '{d}/data';\n$conf['userewrite'] = 1;\n$conf['useacl'] = 0;\n")
        if root:
            subprocess.run(["chown", "-R", "www-data", os.path.join(d, "data")], check=True)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def get(self, path, *args):
        return curl(self.server.url(path), *args)

    def test_start_page_links_are_pretty(self):
        for proto in ((), ("--http2-prior-knowledge",)):
            r = self.get("/", *proto)
            self.assertEqual(r.status, 200, r)
            links = set(re.findall(r'href="(/[^"#]*)"', r.text))
            self.assertIn("/start", links)
            self.assertIn("/_export/raw/start", links)
            self.assertFalse(any("doku.php?id=" in link for link in links), links)

    def test_pages_by_pretty_url(self):
        r = self.get("/wiki:syntax")
        self.assertEqual(r.status, 200)
        self.assertIn('id="formatting_syntax">Formatting Syntax', r.text)
        r = self.get("/wiki:welcome?do=index")
        self.assertEqual(r.status, 200)
        self.assertIn("Sitemap", r.text)

    def test_export_and_media_rules(self):
        r = self.get("/_export/raw/wiki:welcome")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body.startswith(b"====== Welcome to your new DokuWiki ======"), r.body[:80])
        r = self.get("/_media/wiki:dokuwiki-128.png")
        self.assertEqual((r.status, r.header("content-type")), (200, "image/png"))
        self.assertTrue(r.body.startswith(b"\x89PNG"))

    def test_static_files_are_served_directly(self):
        r = self.get("/lib/tpl/dokuwiki/images/favicon.ico")
        self.assertEqual(r.status, 200)
        self.assertIn("image", r.header("content-type"))

    def test_unknown_page_is_the_wikis_own(self):
        r = self.get("/no:such:page")
        self.assertIn("This topic does not exist yet", r.text)

    def test_files_the_wiki_keeps_private(self):
        for path in ("/.htaccess", "/VERSION", "/.htaccess.dist", "/conf/local.php"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertIn(r.status, (404,) if path != "/conf/local.php" else (200, 404), r)
                self.assertNotIn(b"RewriteRule", r.body)
                self.assertNotIn(b"savedir", r.body)


if __name__ == "__main__":
    main()
