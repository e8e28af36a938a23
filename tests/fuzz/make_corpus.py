#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) and config.dict.

Seeds are small real inputs: FastCGI records as php-cgi and libfcgi send them, CGI heads,
the unit tests' configuration files, request paths with encodings, X-Forwarded-For values,
redirect rules, users and groups files.  Run it again after changing it; the files are kept in git.
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def record(rtype, content=b"", request_id=1, padding=None):
    if padding is None:
        padding = -len(content) & 7
    return struct.pack(">BBHHBB", 1, rtype, request_id, len(content), padding, 0) + content + b"\0" * padding


def nv(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


STDOUT, STDERR, END, PARAMS, GET_VALUES, GET_VALUES_RESULT, UNKNOWN = 6, 7, 3, 4, 9, 10, 11
END_OK = struct.pack(">IB3x", 0, 0)

# ---- fcgi_record: what a worker sends back
php = b"X-Powered-By: PHP/8.2.7\r\nContent-type: text/html; charset=UTF-8\r\n\r\nhello"
write("fcgi_record", "php_hello", record(STDOUT, php) + record(STDOUT) + record(END, END_OK))
write("fcgi_record", "libfcgi_hello", record(STDOUT, b"Content-Type: text/plain\r\n\r\nHello\n", padding=0) + record(STDOUT) +
      record(END, END_OK))
write("fcgi_record", "stderr_then_404", record(STDERR, b"PHP Warning: x in /a.php on line 3\n") +
      record(STDOUT, b"Status: 404 Not Found\r\n\r\n") + record(END, struct.pack(">IB3x", 1, 0)))
write("fcgi_record", "get_values_result", record(GET_VALUES_RESULT, nv(b"FCGI_MAX_CONNS", b"1") + nv(b"FCGI_MAX_REQS", b"1") +
                                                 nv(b"FCGI_MPXS_CONNS", b"0"), request_id=0))
write("fcgi_record", "unknown_type", record(UNKNOWN, bytes([42]) + b"\0" * 7, request_id=0))
write("fcgi_record", "max_padding", record(STDOUT, b"Status: 200\n\nx", padding=255) + record(END, END_OK))
write("fcgi_record", "overloaded", record(END, struct.pack(">IB3x", 0, 2)))

# ---- fcgi_params: PARAMS and GET_VALUES bodies
params = b"".join(nv(n, v) for n, v in [
    (b"SCRIPT_FILENAME", b"/var/www/index.php"), (b"QUERY_STRING", b"a=1&b=%20"), (b"REQUEST_METHOD", b"GET"),
    (b"HTTP_HOST", b"blog.test"), (b"CONTENT_LENGTH", b"")])
write("fcgi_params", "request_params", params)
write("fcgi_params", "long_value", nv(b"HTTP_COOKIE", b"k=" + b"v" * 300))
write("fcgi_params", "get_values", nv(b"FCGI_MAX_CONNS", b"") + nv(b"FCGI_MAX_REQS", b"") + nv(b"FCGI_MPXS_CONNS", b""))
write("fcgi_params", "empty_pair", nv(b"", b""))


# ---- cgi_head: options, max_head (2 bytes), chunk size, then the output
def head(options, max_head, chunk, text):
    return bytes([options]) + struct.pack(">H", max_head) + bytes([chunk]) + text


write("cgi_head", "php", head(0, 65535, 7, php))
write("cgi_head", "status_404", head(0, 4096, 0, b"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>no</h1>"))
write("cgi_head", "local_redirect", head(0, 4096, 3, b"Location: /other/page?x=1\n\n"))
write("cgi_head", "absolute_redirect", head(1, 4096, 1, b"Location: https://example.com/\r\n\r\n"))
write("cgi_head", "content_length", head(2, 4096, 2, b"Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello, and more"))
write("cgi_head", "head_request", head(1, 4096, 4, b"Content-Length: 3\r\n\r\nabc"))
write("cgi_head", "no_content", head(0, 4096, 9, b"Status: 204\r\nX-A: b\r\n\r\nignored"))
write("cgi_head", "hop_by_hop", head(2, 4096, 5, b"Connection: close\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=b\r\n"
                                                b"Set-Cookie: c=d\r\n\r\n"))
write("cgi_head", "tiny_max_head", head(0, 16, 1, b"Content-Type: text/plain\r\n\r\n"))

# ---- config: the unit tests' good configuration, the sample, and a few refused ones
SEP = "\n##file\n"
good = os.path.join(SRC, "tests/unit/data/good/conf.d")
good_files = [open(os.path.join(good, n)).read() for n in sorted(os.listdir(good)) if n.endswith(".yaml")]
for i, text in enumerate(good_files):
    write("config", "good_%d" % i, text)
write("config", "good_all", SEP.join(good_files))
sample = os.path.join(SRC, "conf.d")
write("config", "sample", SEP.join(open(os.path.join(sample, n)).read() for n in sorted(os.listdir(sample)) if n.endswith(".yaml")))
site = "sites:\n  s:\n    bindings: [http://*:80]\n    root: ../www/blog\n"
write("config", "minimal", site)
write("config", "modules", site + """    modules:
      request_filtering: {verbs: {deny: [TRACE]}, deny_sequences: [".."], max_header_size: 8KiB, allow_high_bit: true}
      redirect: [{from: "/a/*/b/*", to: "https://x.test/$2/$1#f", status: 308}]
      authentication: {anonymous: false, basic: {realm: r, users_file: users.htpasswd}, groups_file: groups.txt}
      authorization: [{path: "/*", allow: {roles: [admins], verbs: [GET]}}, {path: "*", deny: {users: ["?"]}}]
      custom_errors: {mode: detailed_local_only, pages: {404: errors/404.html}}
    locations:
      /x: {modules: {redirect: {enabled: false}}}
""")
write("config", "split_server", "server:\n  limits: {max_connections: 5}\n" + site + SEP + "server:\n  threads: 3\n")
write("config", "duplicate_pool", "pools:\n  php: {command: [x]}\n" + SEP + "pools:\n  php:\n    command: [y]\n")
write("config", "anchors", "pools:\n  a: &p {command: [x], max_processes: 2}\n  b: *p\n" + site)
write("config", "syntax_error", "sites:\n  s:\n    root: a: b\n")
write("config", "tls", """sites:
  t:
    bindings: ["https://127.0.0.1:8443:t.test"]
    tls: {certificate: certs/blog.pem, key: certs/blog.key}
    root: ../www/shop
""")
keys = set()
for n in os.listdir(os.path.join(SRC, "frontend")):
    if n.startswith("config") and n.endswith(".c"):
        keys.update(re.findall(r'\{"([a-z_0-9]+)", ', open(os.path.join(SRC, "frontend", n)).read()))
with open(os.path.join(HERE, "config.dict"), "w") as f:
    f.write("# YAML keys of the configuration (tests/fuzz/make_corpus.py writes this file)\n")
    for k in sorted(keys) + ["server", "pools", "sites", "##file"]:
        f.write('"%s"\n' % k)
    for token in [": ", "- ", "{", "}", "[", "]", "&a", "*a", "http://*:", "https://", "tcp://", "unix:", "tcp:127.0.0.1:",
                  "10s", "5m", "1MiB", "2GB", "\\x0a##file\\x0a"]:
        f.write('"%s"\n' % token)

# ---- url: request paths as sent, header values
for i, s in enumerate([
        "/", "/index.php/a/b?x=1", "/a/b/../c", "/%2e%2e/%2E%2e/etc/passwd", "/foo%00.php", "/a\\b", "/caf%C3%A9/na\xefve",
        "/x;jsessionid=1/..;/y", "/secret.ini.", "/secret.ini%20", "/index.PHP::$DATA", "/%252e%252e/x", "/%%41%4", "/a//b///c",
        "127.0.0.1", "[::1]:8080", "::ffff:10.0.0.1", "10.0.0.1:443", " 203.0.113.9 ", "10.0.0.1, 203.0.113.9, 192.168.1.5",
        "unknown, 10.1.2.3", "2001:db8::1, ::1, , 10.9.9.9"]):
    write("url", "seed_%02d" % i, s.encode("latin-1"))

# ---- redirect: from NUL to NUL query NUL path
for i, (frm, to, query, path) in enumerate([
        ("/old/*", "/new/$1", "", "/old/x/y"), ("/a/*/b/*", "https://example.com/$2/$1#top", "q=1", "/a/1/b/2"),
        ("/tmp", "/temp", "x=%20y", "/tmp"), ("*", "/$1$1$9$", "", "/any thing?#"), ("/*.php", "/index.php?page=$1", "a=b",
                                                                                     "/sub/page.php"),
        ("/*/*/*/*/*/*/*/*/*/*", "/$9/$1", "", "/1/2/3/4/5/6/7/8/9/10/11"), ("/caf\xe9/*", "/x/$1", "\x80", "/caf\xe9/\xff\n")]):
    write("redirect", "seed_%d" % i, "\0".join([frm, to, query, path]).encode("latin-1"))

# ---- htpasswd and groups
ALICE = "alice:$2y$04$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS"
CAROL = "carol:$6$abcdefgh$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/"
DAVE = "dave:$5$saltsalt$z9q92hf6JbktqU/z9d42Vu8uW1UyBKh6JgNV7jXir.9"
ERIN = "erin:$6$rounds=5000$xyz$m/EAasXKOiw7Kn4MJD.ojrYD8gcuglP7NXfztPlCnnqp4yt4FwXQlo5GSPXN.lDaK4yLlzGIkOBDDieJfkvG0/"
FRANK = "frank:$2b$04$abcdefghijklmnopqrstuuyvPXIbu7xe6/CED2DzX8z6Si09MlzlW"
write("htpasswd", "every_scheme", "# users\n" + CAROL + "\r\n\n" + ALICE + "\n  " + DAVE + "  \n" + ERIN + "\n" + FRANK)
write("htpasswd", "one_user", ALICE + "\n")
write("htpasswd", "legacy", "old:$apr1$abc$defghijklmnopqrstuvwx.\n")
write("htpasswd", "duplicate", ALICE + "\n" + ALICE + "\n")
write("groups", "groups", "# roles\nadmins: alice bob\nstaff:\tcarol  dave\r\n\nadmins: erin\nempty:\n")
write("groups", "one", "admins: alice\n")
write("groups", "bad_name", "a b: alice\n")
