"""Real PHP applications from Debian's archive behind h2pool, with pretty URLs through rewrite.

DokuWiki (package `dokuwiki`) with `userewrite = 1`: its .htaccess rules mapped onto the
rewrite module, exactly as the README's recipe writes them.  The installed tree is copied into
the test directory (with its configuration and data) so the test changes nothing on the system.

MediaWiki (package `mediawiki`, when installed: scripts/deps.sh does not install it, it is big)
on SQLite with `$wgArticlePath = "/wiki/$1"`: installed by its own maintenance/install.php into
the test directory, served from /usr/share/mediawiki as the /w application, as the README's
recipe writes it.
"""
import json
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


MEDIAWIKI = "/usr/share/mediawiki"

MEDIAWIKI_CONFIG = """
pools:
  php:
    command: [php-cgi]
    max_processes: 2
    env: {MW_CONFIG_FILE: {dir}/conf/LocalSettings.php}
    {pool_user}
sites:
  wiki:
    bindings: [http://127.0.0.1:{port:http}]
    root: {dir}/www
    applications:
      /w: {root: /usr/share/mediawiki}
    handlers: [{path: "*.php", pool: php}]
    modules:
      rewrite:
        - {match: "^/wiki/(.*)$", to: "/w/index.php?title=$1"}
        - {match: "^/?$", to: "/w/index.php"}
"""


@unittest.skipUnless(os.path.isdir(MEDIAWIKI) and shutil.which("php-cgi"), "mediawiki is not installed")
class MediaWikiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        root = os.geteuid() == 0
        cls.server = Server(MEDIAWIKI_CONFIG.replace("{pool_user}", "user: www-data" if root else ""))
        cls.addClassCleanup(cls.server.cleanup)
        d = cls.server.dir
        for sub in ("www", "data", "conf", "images", "cache"):
            os.mkdir(os.path.join(d, sub))
            if root and sub != "www":
                shutil.chown(os.path.join(d, sub), "www-data")
        as_wiki_user = ["runuser", "-u", "www-data", "--"] if root else []
        subprocess.run(as_wiki_user + ["php", MEDIAWIKI + "/maintenance/install.php", "--dbtype", "sqlite",
                                       "--dbpath", d + "/data", "--dbname", "wiki", "--server", "http://127.0.0.1:%d" % cls.server.port(),
                                       "--scriptpath", "/w", "--pass", "Adm1n-h2pool-wiki", "--confpath", d + "/conf",
                                       "Test Wiki", "admin"], check=True, capture_output=True, cwd=d)
        with open(os.path.join(d, "conf/LocalSettings.php"), "a") as f:
            f.write(f'$wgArticlePath = "/wiki/$1";\n$wgUploadDirectory = "{d}/images";\n$wgCacheDirectory = "{d}/cache";\n')
        cls.server.start()

    def get(self, path, *args):
        return curl(self.server.url(path), *args)

    def title(self, r):
        m = re.search(r"<title>([^<]*) - Test Wiki</title>", r.text)
        return m.group(1) if m else None

    def test_pages_by_pretty_url(self):
        for proto in ((), ("--http2-prior-knowledge",)):
            with self.subTest(proto=proto):
                r = self.get("/wiki/Main_Page", *proto)
                self.assertEqual(r.status, 200, r)
                links = set(re.findall(r'href="(/[^"#]*)"', r.text))
                self.assertIn("/wiki/Special:RecentChanges", links)
                self.assertFalse(any("index.php?title=Special:RecentChanges" == link for link in links), links)
        r = self.get("/")
        self.assertEqual((r.status, r.header("location")), (301, self.server.url("/wiki/Main_Page")))
        r = self.get("/wiki/Special:Version")
        self.assertEqual((r.status, self.title(r)), (200, "Version"))
        self.assertIn("https://www.mediawiki.org/", r.text)

    def test_titles_with_slashes_and_query_characters(self):
        # a capture is percent-encoded into title=: `&` and `?` stay in the title (Apache needs [B])
        for path, title in (("/wiki/Help:Foo/Bar", "Help:Foo/Bar"), ("/wiki/A%26B", "A&amp;B"),
                            ("/wiki/What%3F", "What?"), ("/wiki/50%25_off", "50% off")):
            with self.subTest(path=path):
                self.assertEqual(self.title(self.get(path)), title)
        r = self.get("/wiki/Main_Page?action=history")
        self.assertEqual((r.status, self.title(r)), (200, "Main Page: Revision history"))

    def test_scripts_under_w(self):
        r = self.get("/w/index.php?title=Sandbox&action=edit")
        self.assertEqual((r.status, self.title(r)), (200, "Creating Sandbox"))
        r = self.get("/w/load.php?modules=startup&only=scripts&raw=1&skin=vector")
        self.assertEqual(r.status, 200)
        self.assertIn("javascript", r.header("content-type"))
        r = self.get("/w/api.php?action=query&meta=siteinfo&format=json")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body)["query"]["general"]["articlepath"], "/wiki/$1")

    def test_an_edit_through_the_api_then_by_pretty_url(self):
        r = self.get("/w/api.php", "--data", "action=edit&title=Sandbox_h2pool&format=json&token=%2B%5C"
                     "&text=Served+by+h2pool+%26+MediaWiki")
        self.assertEqual(json.loads(r.body)["edit"]["result"], "Success", r)
        r = self.get("/wiki/Sandbox_h2pool")
        self.assertEqual(r.status, 200)
        self.assertIn("Served by h2pool &amp; MediaWiki", r.text)

    def test_unknown_page_is_the_wikis_own_404(self):
        r = self.get("/wiki/No_such_page_here")
        self.assertEqual(r.status, 404)
        self.assertIn("There is currently no text in this page", r.text)

    def test_skin_assets_are_served_directly(self):
        r = self.get("/w/resources/assets/change-your-logo.svg")
        self.assertEqual((r.status, r.header("content-type")), (200, "image/svg+xml"))
        self.assertTrue(r.header("etag"))  # libh2o's file handler, not PHP


if __name__ == "__main__":
    main()
