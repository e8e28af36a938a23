"""The command line (`-t`, `-c`, `--version`, `-h`) and the process lifecycle (SIGTERM: stop
accepting, finish the requests in flight, exit 0)."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import unittest

import h2ptest
from h2ptest import Server, run_h2pool, wait_until

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)


ERROR_LINE = re.compile(r"^(?P<file>\S+\.yaml):(?P<line>\d+):(?P<col>\d+): (?P<key>[\w.\[\]-]+): (?P<reason>.+)$")


def conf_dir(files):
    """A conf.d with `files` (name -> YAML text); returns its path (removed at cleanup)."""
    top = tempfile.mkdtemp(prefix="h2pool-cli-")
    os.makedirs(os.path.join(top, "www"))
    conf = os.path.join(top, "conf.d")
    os.makedirs(conf)
    for name, text in files.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text)
    return top, conf


class ConfigTestTest(unittest.TestCase):
    def make(self, files):
        top, conf = conf_dir(files)
        self.addCleanup(subprocess.run, ["rm", "-rf", top])
        return conf

    def error_lines(self, proc):
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        for line in lines:
            self.assertRegex(line, ERROR_LINE, "not file:line:col: key.path: reason")
        return [ERROR_LINE.match(l).groupdict() for l in lines]

    def test_valid_configuration(self):
        conf = self.make({"h2pool.yaml": "sites:\n  a:\n    bindings: [http://127.0.0.1:8080]\n    root: ../www\n"})
        proc = run_h2pool("-t", "-c", conf)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "configuration OK")
        proc = run_h2pool("--test", "--conf", conf)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "configuration OK"))

    def test_sample_configuration_is_valid(self):
        proc = run_h2pool("-t", "-c", os.path.join(h2ptest.SRC, "conf.d"))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("configuration OK", proc.stdout)

    def test_two_errors_are_both_reported(self):
        conf = self.make({"h2pool.yaml": (
            "sites:\n"                                  # 1
            "  a:\n"                                    # 2
            "    bindings: [http://127.0.0.1:80a]\n"    # 3
            "    root: ../www\n"                        # 4
            "    rooot: ../www\n")})                    # 5
        proc = run_h2pool("-t", "-c", conf)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertNotIn("configuration OK", proc.stdout)
        errors = self.error_lines(proc)
        self.assertEqual(len(errors), 2, proc.stderr)
        port, typo = errors
        self.assertEqual((port["line"], port["key"]), ("3", "sites.a.bindings[0]"))
        self.assertIn("80a", port["reason"])
        self.assertEqual((typo["line"], typo["col"], typo["key"]), ("5", "5", "sites.a.rooot"))
        self.assertIn("rooot", typo["reason"])
        for e in errors:
            self.assertEqual(e["file"], os.path.join(conf, "h2pool.yaml"))

    def test_errors_in_several_files_name_their_file(self):
        conf = self.make({
            "10-server.yaml": "server:\n  limits:\n    header_timeout: 10x\n",
            "20-sites.yaml": "sites:\n  a:\n    bindings: [http://127.0.0.1:8080]\n    root: ../www\n",
            "30-more.yaml": "sites:\n  a:\n    bindings: [http://127.0.0.1:8081]\n    root: ../www\n",
        })
        proc = run_h2pool("-t", "-c", conf)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        errors = self.error_lines(proc)
        self.assertEqual([os.path.basename(e["file"]) for e in errors], ["10-server.yaml", "30-more.yaml"], proc.stderr)
        self.assertEqual((errors[0]["line"], errors[0]["key"]), ("3", "server.limits.header_timeout"))
        self.assertEqual((errors[1]["line"], errors[1]["key"]), ("2", "sites.a"))
        self.assertIn("20-sites.yaml", errors[1]["reason"])  # where the first definition is

    def test_errors_stop_the_start_too(self):
        conf = self.make({"h2pool.yaml": "sites:\n  a:\n    bindings: [http://127.0.0.1:80a]\n    root: ../www\n"})
        proc = run_h2pool("-c", conf)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(len(self.error_lines(proc)), 1)

    def test_what_the_start_reads_is_checked_and_every_error_listed(self):
        """-t reads what a start reads (users and groups files, error pages, certificates and keys,
        the error log's directory) and lists every problem, each against the key that names it."""
        conf = self.make({})
        top = os.path.dirname(conf)
        cert_a, key_a = h2ptest.make_cert(top, "a.test", "a")
        _, key_b = h2ptest.make_cert(top, "b.test", "b")
        files = {
            "users": "alice:$1$salt$qJH7.N4xYta3aEG/dfqo/0\nbob:secret\n",  # MD5 and plain text: 2 errors
            "groups": "admins alice\n",
            "big.html": "x" * (1024 * 1024 + 1),
        }
        for name, text in files.items():
            with open(os.path.join(conf, name), "w") as f:
                f.write(text)
        with open(os.path.join(conf, "h2pool.yaml"), "w") as f:
            f.write(
                "server:\n"                                                          # 1
                "  error_log: ../no-such-dir/error.log\n"                            # 2
                "sites:\n"                                                           # 3
                "  a:\n"                                                             # 4
                "    bindings: [https://127.0.0.1:8443]\n"                           # 5
                f"    tls: {{certificate: {cert_a}, key: {key_b}}}\n"                # 6
                "    root: ../www\n"                                                 # 7
                "    modules:\n"                                                     # 8
                "      authentication:\n"                                            # 9
                "        basic: {users_file: users}\n"                               # 10
                "        groups_file: groups\n"                                      # 11
                "      redirect: [{from: /old, to: \"/new\\r\\nSet-Cookie: x=1\"}]\n"  # 12
                "      custom_errors: {pages: {404: big.html, 500: missing.html}}\n")  # 13
        proc = run_h2pool("-t", "-c", conf)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertNotIn("configuration OK", proc.stdout)
        errors = self.error_lines(proc)
        found = {(e["line"], e["key"]) for e in errors}
        expected = {
            ("2", "server.error_log"),
            ("6", "sites.a.tls.key"),
            ("10", "sites.a.modules.authentication.basic.users_file"),
            ("11", "sites.a.modules.authentication.groups_file"),
            ("12", "sites.a.modules.redirect[0].to"),
            ("13", "sites.a.modules.custom_errors.pages.404"),
            ("13", "sites.a.modules.custom_errors.pages.500"),
        }
        self.assertEqual(found, expected, proc.stderr)
        reasons = "\n".join(e["reason"] for e in errors)
        for words in ("does not match the certificate", "MD5", "plain-text", "want group", "control character 0x0d",
                      "larger than 1 MiB", "No such file", "cannot create"):
            self.assertIn(words, reasons)
        self.assertEqual(sum("users:" in e["reason"] for e in errors), 2, proc.stderr)  # every bad line of the file
        # a start refuses the same configuration with the same messages
        start = run_h2pool("-c", conf)
        self.assertEqual(start.returncode, 1)
        self.assertEqual({(e["line"], e["key"]) for e in self.error_lines(start)}, expected)

    def test_yaml_syntax_error(self):
        conf = self.make({"h2pool.yaml": "sites:\n  a: [\n"})
        proc = run_h2pool("-t", "-c", conf)
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"h2pool\.yaml:\d+:\d+: ")

    def test_missing_directory(self):
        missing = os.path.join(tempfile.gettempdir(), "h2pool-no-such-dir-%d" % os.getpid())
        for args in (["-t", "-c", missing], ["-c", missing]):
            with self.subTest(args=args):
                proc = run_h2pool(*args)
                self.assertEqual(proc.returncode, 1)
                self.assertIn(missing, proc.stderr)
                self.assertRegex(proc.stderr, r"(?i)no such file or directory|cannot open")
                self.assertNotIn("configuration OK", proc.stdout)

    def test_directory_without_yaml(self):
        top, _ = conf_dir({})
        self.addCleanup(subprocess.run, ["rm", "-rf", top])
        proc = run_h2pool("-t", "-c", os.path.join(top, "www"))
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no *.yaml files", proc.stderr)

    def test_no_site_is_a_clear_error(self):
        """An empty file, comments only, pools and a server section but no site: refused by -t and
        by a start, with a message (a start used to abort in libh2o with no listener)."""
        pool = "pools:\n  p:\n    command: [/bin/true]\n"
        for text in ("", "# nothing yet\n", "server: {threads: 1}\n", pool, "sites: {}\n"):
            with self.subTest(text=text):
                conf = self.make({"h2pool.yaml": text})
                for args in (["-t", "-c", conf], ["-c", conf]):
                    proc = run_h2pool(*args)
                    self.assertEqual(proc.returncode, 1, proc.stderr)
                    self.assertIn("no site is declared", proc.stderr)
                    self.assertNotIn("Assertion", proc.stderr)
                    self.assertNotIn("configuration OK", proc.stdout)


class OptionsTest(unittest.TestCase):
    def test_version(self):
        for flag in ("--version", "-v"):
            with self.subTest(flag=flag):
                proc = run_h2pool(flag)
                self.assertEqual(proc.returncode, 0)
                self.assertRegex(proc.stdout, r"^h2pool \d+\.\d+\.\d+ \(libh2o 2\.2\.5\)$")

    def test_help(self):
        for flag in ("-h", "--help"):
            with self.subTest(flag=flag):
                proc = run_h2pool(flag)
                self.assertEqual(proc.returncode, 0)
                self.assertIn("usage: h2pool", proc.stdout)
                for option in ("-c", "-t", "--version", "--help"):
                    self.assertIn(option, proc.stdout)

    def test_bad_usage(self):
        for args in (["--bogus"], ["-c"], ["-t", "-c", "/tmp", "extra"]):
            with self.subTest(args=args):
                proc = run_h2pool(*args)
                self.assertEqual(proc.returncode, 2)
                self.assertIn("usage: h2pool", proc.stderr)
                self.assertEqual(proc.stdout, "")


def connect_refused(port):
    """True once nothing listens on port (a reset means a listener closed under the attempt)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


class LifecycleTest(unittest.TestCase):
    CONF = """
    server:
      threads: 2
    pools:
      slow:
        command: [{apps}/slow_fcgi]
        max_processes: 2
        {worker_user}
    sites:
      s:
        bindings: [http://127.0.0.1:{port:http}]
        root: {dir}/www
        handlers:
          - {path: "/slow", pool: slow}
    """

    def start(self, files=None):
        server = Server(self.CONF, files or {"www/index.html": "ok\n"})
        self.addCleanup(server.cleanup)
        self.addCleanup(stop_cleanly, server)
        return server.start()

    def test_sigterm_exits_0(self):
        server = self.start()
        self.assertEqual(server.get("/").status, 200)
        proc = server.proc
        server.stop()
        self.assertEqual(proc.returncode, 0, server.read_log())
        self.assertIn("stopped", server.read_log())

    def test_sigint_exits_0(self):
        server = self.start()
        server.proc.send_signal(signal.SIGINT)
        self.assertEqual(server.proc.wait(30), 0, server.read_log())

    def test_fastcgi_request_in_flight_finishes_after_sigterm(self):
        server = self.start()
        with socket.create_connection(("127.0.0.1", server.port()), timeout=30) as s:
            # the app sends its head at once, then a line every 300 ms: the head proves the
            # request is in flight on a worker before SIGTERM is sent
            s.sendall(b"GET /slow?chunks=5&ms=300 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "connection closed before the response head")
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            server.proc.send_signal(signal.SIGTERM)
            # new connections are refused while the request is still in flight
            wait_until(lambda: connect_refused(server.port()), what="the listener to close after SIGTERM")
            self.assertIsNone(server.proc.poll(), "h2pool exited with a request in flight")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"tick\n"), 5, data)
        self.assertTrue(data.endswith(b"0\r\n\r\n") or b"content-length" in data.lower(), data)
        self.assertEqual(server.proc.wait(30), 0, server.read_log())

    def test_fastcgi_slow_response_completes_after_sigterm(self):
        server = self.start()
        curl_proc = subprocess.Popen(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", server.url("/slow?ms=1500")],
                                     stdout=subprocess.PIPE)
        self.addCleanup(curl_proc.kill)
        # in flight: a worker is sleeping inside the request (slow_fcgi sleeps only there)
        wait_until(lambda: any(sleeping(pid) for pid in server.workers()), what="a worker to take the request")
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: connect_refused(server.port()), what="the listener to close after SIGTERM")
        out, _ = curl_proc.communicate(timeout=60)
        self.assertEqual(out.splitlines()[-1], b"200", out)
        self.assertIn(b"slept 1500 ms", out)
        self.assertEqual(server.proc.wait(30), 0, server.read_log())

    def test_static_response_in_flight_finishes_after_sigterm(self):
        size = 32 * 1024 * 1024
        server = Server(self.CONF, {"www/index.html": "ok\n"})
        self.addCleanup(server.cleanup)
        self.addCleanup(stop_cleanly, server)
        with open(server.path("www/big.bin"), "wb") as f:
            f.truncate(size)
        server.start()
        with socket.create_connection(("127.0.0.1", server.port()), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(65536)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
            # the client stops reading: the response cannot finish until it reads again
            server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: connect_refused(server.port()), what="the listener to close after SIGTERM")
            self.assertIsNone(server.proc.poll(), "h2pool exited with a response in flight")
            total = len(data)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
        head_len = data.index(b"\r\n\r\n") + 4
        self.assertEqual(total - head_len, size)
        self.assertEqual(server.proc.wait(30), 0, server.read_log())

    def test_port_in_use_is_a_clear_error(self):
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            server = Server(self.CONF.replace("{port:http}", str(port)), {"www/index.html": "ok\n"}, expect_start=False)
            self.addCleanup(server.cleanup)
            server.start()
            self.assertEqual(server.proc.wait(30), 1)
            log = server.read_log()
            self.assertIn(f"127.0.0.1:{port}", log)
            self.assertRegex(log, r"(?i)address already in use")


def sleeping(pid):
    """True when process pid is in nanosleep(2) / clock_nanosleep(2)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] in ("35", "230")  # x86_64 numbers
    except (OSError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "nanosleep" in f.read()
    except OSError:
        return False


if __name__ == "__main__":
    h2ptest.main()
