"""logging module (`modules.logging`): the W3C extended log of each site under
server.log_dir/<site>/, IIS's default fields in IIS's order, one line per response of every kind
(static, FastCGI, CGI, errors from modules and libh2o), values escaped so that no request can
forge a line or a field, rotation by day, by size and on SIGUSR1 without losing a line, every
line written at shutdown, and a log a real analyser (goaccess) reads."""
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import unittest

import h2ptest
from h2ptest import Server, curl, raw_request, wait_until

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)

FIELDS = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) "
          "sc-status sc-substatus sc-win32-status time-taken").split()

CONF = """
server:
  threads: 2
  log_dir: {dir}/logs
pools:
  echo:
    command: [{apps}/echo_fcgi]
    max_processes: 2
    {worker_user}
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}"]
    http2: true
    root: {dir}/www
    handlers:
      - {path: "/app/*", pool: echo, resource: unspecified}
      - {path: "/cgi-bin/*.cgi", cgi: true}
    modules:
      request_filtering: {file_extensions: {deny: [.bak]}}
    locations:
      /private: {modules: {ip_restriction: {deny: [127.0.0.0/8]}}}
      /quiet: {modules: {logging: {enabled: false}}}
  other:
    bindings: ["http://127.0.0.1:{port:other}"]
    root: {dir}/www
"""

FILES = {
    "www/hello.txt": "hello\n",
    "www/caf\u00e9.txt": "utf-8 name\n",
    "www/private/p.txt": "private\n",
    "www/quiet/q.txt": "quiet\n",
    "www/old.bak": "backup\n",
}

CGI = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncgi ok\\n'\n"


def make_server(conf=CONF, files=FILES):
    """The test server (started by `with`)."""
    server = Server(conf, files)
    server.write("www/cgi-bin/hi.cgi", CGI, mode=0o755)
    return server


def log_files(server, site="main"):
    return sorted(glob.glob(os.path.join(server.path("logs"), site, "u_ex*.log")))


def read_lines(paths):
    lines = []
    for path in paths:
        with open(path, "rb") as f:
            lines += f.read().decode("ascii").split("\n")[:-1]  # every line ends in "\n", ASCII only
    return lines


def data_lines(lines):
    return [line for line in lines if not line.startswith("#")]


def parse(line):
    """A data line as a dict of its 15 fields (fails unless there are exactly 15)."""
    values = line.split(" ")
    if len(values) != len(FIELDS):
        raise AssertionError(f"{len(values)} fields in {line!r}")
    return dict(zip(FIELDS, values))


def escape(raw):
    """What the log makes of a value: "-" when empty, a space is '+' (as IIS writes it), control
    bytes, '"', '#' and non-ASCII bytes are %XX; anything else (a '%' too) is kept."""
    if not raw:
        return "-"
    out = []
    for b in raw:
        if b == 0x20:
            out.append("+")
        elif b < 0x21 or b >= 0x7f or b in b'"#':
            out.append("%%%02X" % b)
        else:
            out.append(chr(b))
    return "".join(out)


def wait_for_lines(server, count, site="main"):
    """The data lines of the site's log once there are `count` of them."""
    return wait_until(lambda: (lambda d: d if len(d) >= count else None)(data_lines(read_lines(log_files(server, site)))),
                      what=f"{count} log lines")


class TestLogging(unittest.TestCase):
    def test_one_line_per_response_of_every_kind(self):
        with make_server() as server:
            port = server.port()
            cases = [  # (path, extra curl args, status, substatus); each path once
                ("/hello.txt?a=1&b=2", [], 200, 0),
                ("/app/run?status=200", [], 200, 0),
                ("/app/fail?status=503", [], 503, 0),
                ("/cgi-bin/hi.cgi", [], 200, 0),
                ("/missing.txt", [], 404, 0),
                ("/old.bak", [], 404, 7),
                ("/private/p.txt", [], 403, 6),
                ("/hello.txt?h2", ["--http2-prior-knowledge"], 200, 0),
            ]
            for path, args, status, _ in cases:
                self.assertEqual(curl(server.url(path), "-A", "tester/1.0", "-e", "http://ref.test/x", *args).status, status,
                                 path)
            self.assertEqual(curl(server.url("/quiet/q.txt")).status, 200)  # logging: enabled: false
            curl(f"http://127.0.0.1:{server.port('other')}/hello.txt")
            lines = wait_for_lines(server, len(cases))
            stop_cleanly(server)
            lines = data_lines(read_lines(log_files(server)))
            self.assertEqual(len(lines), len(cases), lines)
            # (two threads: lines are in the order responses ended on each, not across them)
            by_path = {parse(line)["cs-uri-stem"] + "?" + parse(line)["cs-uri-query"]: line for line in lines}
            for path, _, status, substatus in cases:
                stem, _, query = path.partition("?")
                line = by_path[stem + "?" + (query or "-")]
                f = parse(line)
                self.assertEqual((f["cs-method"], f["cs-uri-stem"], f["cs-uri-query"]), ("GET", stem, query or "-"), line)
                self.assertEqual((f["sc-status"], f["sc-substatus"], f["sc-win32-status"]), (str(status), str(substatus), "0"),
                                 line)
                self.assertEqual((f["s-ip"], f["s-port"], f["c-ip"]), ("127.0.0.1", str(port), "127.0.0.1"), line)
                self.assertEqual((f["cs(User-Agent)"], f["cs(Referer)"], f["cs-username"]), ("tester/1.0", "http://ref.test/x", "-"))
                self.assertRegex(f["date"], r"^\d{4}-\d{2}-\d{2}$")
                self.assertRegex(f["time"], r"^\d{2}:\d{2}:\d{2}$")
                self.assertRegex(f["time-taken"], r"^\d+$")
            # the other site has its own directory
            other = data_lines(read_lines(log_files(server, "other")))
            self.assertEqual(len(other), 1)
            self.assertEqual(parse(other[0])["s-port"], str(server.port("other")))

    def test_header_lines(self):
        with make_server() as server:
            curl(server.url("/hello.txt"))
            wait_for_lines(server, 1)
            stop_cleanly(server)
            [path] = log_files(server)
            self.assertRegex(os.path.basename(path), r"^u_ex\d{6}\.log$")  # IIS's name, UTC date
            lines = read_lines([path])
            self.assertRegex(lines[0], r"^#Software: h2pool \S+$")
            self.assertEqual(lines[1], "#Version: 1.0")
            self.assertRegex(lines[2], r"^#Date: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
            self.assertEqual(lines[3], "#Fields: " + " ".join(FIELDS))
            self.assertEqual(len(data_lines(lines)), 1)

    def test_hostile_values_cannot_forge_lines_or_fields(self):
        # (path, user agent, referer): raw bytes over HTTP/1.1; whatever libh2o accepts is logged
        hostile = [
            (b"/hello.txt?q=%0D%0A2026-01-01+00:00:00+forged", b'Mozilla/5.0 (X11; Linux) "quoted" #hash', b"-"),
            (b"/hello.txt?x=#Fields:+a+b", b"#Fields: date time", b"#Software: evil"),
            (b"/caf\xc3\xa9.txt", "na\u00efve \u2603 agent".encode(), "https://r\u00e9f.test/".encode()),
            (b"/missing%00.txt", b"a\tb c", b"two  spaces\t"),
            (b"/hello.txt?a=%00&b=%22x%22", b"x\" 200 0 0 1", b"\"quoted referer\""),
            (b"/%0Aforged%20line.txt", b"\\x0a\\r\\n", b"%0A"),
            (b"/hello.txt?\"q\"=1", b"", b""),
        ]
        with make_server() as server:
            sent = 0
            for path, agent, referer in hostile:
                request = b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                if agent:
                    request += b"User-Agent: " + agent + b"\r\n"
                if referer:
                    request += b"Referer: " + referer + b"\r\n"
                response = raw_request(server.port(), request + b"\r\n")
                self.assertTrue(response.startswith(b"HTTP/1.1 "), response)
                sent += 1
            # the same through HTTP/2
            self.assertEqual(curl(server.url("/hello.txt?h2=1"), "--http2-prior-knowledge", "-A", "h2 \"agent\" #x").status, 200)
            sent += 1
            wait_for_lines(server, sent)
            stop_cleanly(server)
            lines = read_lines(log_files(server))
            self.assertEqual([line for line in lines if line.startswith("#Fields")], ["#Fields: " + " ".join(FIELDS)])
            self.assertEqual(sum(line.startswith("#") for line in lines), 4, lines)
            rows = [parse(line) for line in data_lines(lines)]  # exactly 15 fields, every one
            self.assertEqual(len(rows), sent, lines)
            for row in rows:
                for name, value in row.items():
                    self.assertTrue(value, name)
                    self.assertFalse(any(c in value for c in " \t\"#"), (name, value))
                    self.assertTrue(all(0x21 <= ord(c) < 0x7f for c in value), (name, value))
                self.assertIn(row["sc-status"], ("200", "404", "400"))
            by_url = {(row["cs-uri-stem"], row["cs-uri-query"]): row for row in rows}
            for path, agent, referer in hostile + [(b"/hello.txt?h2=1", b'h2 "agent" #x', b"")]:
                stem, _, query = path.partition(b"?")
                row = by_url[(escape(stem), escape(query))]
                self.assertEqual((row["cs(User-Agent)"], row["cs(Referer)"]), (escape(agent), escape(referer)))

    def test_sigusr1_reopens_and_no_line_is_lost_under_load(self):
        with make_server() as server:
            port, done, counts, errors = server.port(), threading.Event(), [], []

            def client(n):
                made = 0  # responses received (each request has its own query string)
                try:
                    while not done.is_set():
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                        for i in range(50):
                            conn.request("GET", f"/hello.txt?c={n}&i={made}" if i % 2 else f"/app/x?c={n}&i={made}")
                            response = conn.getresponse()
                            response.read()
                            made += 1
                            if response.status != 200:
                                errors.append(response.status)
                        conn.close()
                except Exception as e:  # noqa: BLE001 (reported below)
                    errors.append(repr(e))
                counts.append(made)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            try:
                [path] = wait_until(lambda: log_files(server), what="the log file")
                wait_until(lambda: len(data_lines(read_lines([path]))) > 200, what="lines under load")
                os.rename(path, path + ".1")  # what logrotate does
                server.proc.send_signal(signal.SIGUSR1)
                wait_until(lambda: os.path.exists(path), what="a new log file after SIGUSR1")
                wait_until(lambda: len(data_lines(read_lines([path]))) > 200, what="lines in the new file")
            finally:
                done.set()
                for t in threads:
                    t.join()
            self.assertEqual(errors, [])
            stop_cleanly(server)
            old, new = read_lines([path + ".1"]), read_lines([path])
            self.assertTrue(new[0].startswith("#Software:") and new[3].startswith("#Fields:"), new[:4])
            rows = [parse(line) for line in data_lines(old + new)]
            self.assertEqual(len(rows), sum(counts))
            self.assertEqual(len({(r["cs-uri-query"]) for r in rows}), sum(counts))  # each request once

    def test_sigusr1_to_the_spawner_changes_nothing(self):
        # `pkill -USR1 h2pool` also matches h2pool-spawner: the reopen signal must not kill it
        with make_server() as server:
            self.assertEqual(curl(server.url("/app/x?status=200")).status, 200)
            spawner = server.spawner()
            self.assertIsNotNone(spawner)
            os.kill(spawner, signal.SIGUSR1)
            server.proc.send_signal(signal.SIGUSR1)
            self.assertEqual(curl(server.url("/hello.txt")).status, 200)
            self.assertEqual(server.spawner(), spawner)
            self.assertEqual(curl(server.url("/app/y?status=200")).status, 200)
            wait_for_lines(server, 3)
            stop_cleanly(server)

    def test_rotation_by_size(self):
        conf = CONF.replace("      request_filtering:", "      logging: {rotate: size, max_size: 2KiB}\n      request_filtering:")
        with make_server(conf) as server:
            for i in range(40):
                self.assertEqual(curl(server.url(f"/hello.txt?request={i}")).status, 200)
            wait_for_lines(server, 40)
            stop_cleanly(server)
            files = log_files(server)
            self.assertGreater(len(files), 1)
            for path in files:
                self.assertRegex(os.path.basename(path), r"^u_extend\d+\.log$")
                self.assertLessEqual(os.path.getsize(path), 2048, path)
                self.assertTrue(read_lines([path])[0].startswith("#Software:"), path)
            numbers = sorted(int(os.path.basename(p)[8:-4]) for p in files)
            self.assertEqual(numbers, list(range(1, len(files) + 1)))
            rows = [parse(line) for line in data_lines(read_lines(files))]
            self.assertEqual(sorted(int(r["cs-uri-query"].split("=")[1]) for r in rows), list(range(40)))
            # a restart goes on with the last file, not over the first
            server.start()
            curl(server.url("/hello.txt?request=after-restart"))
            stop_cleanly(server)
            last = max(log_files(server), key=lambda p: int(os.path.basename(p)[8:-4]))
            self.assertIn("request=after-restart", read_lines([last])[-1])

    def test_shutdown_writes_every_line(self):
        with make_server() as server:
            port = server.port()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            for i in range(300):
                conn.request("GET", f"/hello.txt?n={i}")
                response = conn.getresponse()
                response.read()
                self.assertEqual(response.status, 200)
            conn.close()
            stop_cleanly(server)  # at once: no waiting for the writer
            rows = [parse(line) for line in data_lines(read_lines(log_files(server)))]
            self.assertEqual([r["cs-uri-query"] for r in rows], [f"n={i}" for i in range(300)])

    def test_json_format(self):
        conf = CONF.replace("      request_filtering:", "      logging: {format: json}\n      request_filtering:")
        with make_server(conf) as server:
            self.assertEqual(curl(server.url("/hello.txt?a=1"), "-A", 'x "y"\\').status, 200)
            self.assertEqual(curl(server.url("/old.bak")).status, 404)
            wait_for_lines(server, 2)
            stop_cleanly(server)
            rows = [json.loads(line) for line in read_lines(log_files(server))]
            self.assertEqual(len(rows), 2)
            self.assertEqual(list(rows[0]), FIELDS)
            self.assertEqual((rows[0]["cs-uri-stem"], rows[0]["cs-uri-query"], rows[0]["cs(User-Agent)"]),
                             ("/hello.txt", "a=1", 'x "y"\\'))
            self.assertEqual((rows[1]["sc-status"], rows[1]["sc-substatus"], rows[1]["cs-uri-query"]), (404, 7, None))

    def test_no_log_dir_no_logs(self):
        conf = CONF.replace("  log_dir: {dir}/logs\n", "")
        with make_server(conf) as server:
            self.assertEqual(curl(server.url("/hello.txt")).status, 200)
            stop_cleanly(server)
            self.assertFalse(os.path.exists(server.path("logs")))

    @unittest.skipUnless(shutil.which("goaccess"), "goaccess is not installed")
    def test_goaccess_reads_the_log(self):
        with make_server() as server:
            paths = ["/hello.txt", "/app/x?status=200", "/missing.txt", "/old.bak", "/private/p.txt", "/cgi-bin/hi.cgi"]
            for path in paths * 5:
                curl(server.url(path), "-A", "Mozilla/5.0 (X11; Linux x86_64) \"test\"", "-e", "http://ref.test/page?x=1")
            raw_request(server.port(), b"GET /caf\xc3\xa9.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: #x \xe2\x98\x83\r\n"
                        b"Connection: close\r\n\r\n")
            wait_for_lines(server, len(paths) * 5 + 1)
            stop_cleanly(server)
            [log] = log_files(server)
            report = server.path("report.json")
            proc = subprocess.run(["goaccess", log, "--log-format=W3C", "--no-global-config", "-o", report],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            with open(report) as f:
                general = json.load(f)["general"]
            self.assertEqual(general["total_requests"], len(paths) * 5 + 1, general)
            self.assertEqual(general["valid_requests"], len(paths) * 5 + 1, general)
            self.assertEqual(general["failed_requests"], 0, general)


if __name__ == "__main__":
    h2ptest.main()
