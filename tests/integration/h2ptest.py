"""Test harness: runs the real h2pool binary on free loopback ports and talks to it with curl.

Every server a test starts is stopped by the PID it was started with; every test checks that
no worker process outlives it.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

BIN = os.environ.get("H2POOL_BIN", os.path.join(os.path.dirname(__file__), "../../build/h2pool"))
APPS = os.environ.get("H2POOL_APPS", os.path.join(os.path.dirname(__file__), "../../build/tests"))
SRC = os.environ.get("H2POOL_SRC", os.path.join(os.path.dirname(__file__), "../.."))
PHP_APPS = os.path.join(SRC, "tests/apps/php")


def sanitized():
    """True when h2pool is built with AddressSanitizer (its quarantine makes RSS meaningless)."""
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout
    return "libasan" in out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=15.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def children_of(pid):
    """PIDs whose parent is pid (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry))
    return kids


def process_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


SPAWNER_NAME = "h2pool-spawner"


def spawner_of(pid):
    """The privileged part h2pool pid forked (the workers' and CGI scripts' parent), or None."""
    for kid in children_of(pid):
        if process_name(kid) == SPAWNER_NAME:
            return kid
    return None


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] != "Z"
    except OSError:
        return False


class Response:
    def __init__(self, status, headers, body, version=None):
        self.status, self.headers, self.body, self.version = status, headers, body, version

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def curl(url, *args, timeout=30, data=None):
    """Runs curl; returns a Response (status 0 when curl got no HTTP response)."""
    hdr = tempfile.NamedTemporaryFile(delete=False)
    hdr.close()
    # the HTTP version goes to stderr (-s keeps curl's own messages out of it): appended to the body,
    # it could not be told apart from a body that ends in digits
    cmd = ["curl", "-s", "-g", "-o", "-", "-D", hdr.name, "--max-time", str(timeout), "-w", "%{stderr}%{http_version}"]
    cmd += list(args) + [url]
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 10)
    with open(hdr.name, "rb") as f:
        raw = f.read()
    os.unlink(hdr.name)
    body = proc.stdout
    m = re.search(rb"([0-9.]+)$", proc.stderr)
    version = m.group(1).decode() if m else None
    status, headers = 0, {}
    # the last header block is the final response (after 100 Continue etc.)
    for block in raw.split(b"\r\n\r\n"):
        lines = block.split(b"\r\n")
        if not lines or not lines[0].startswith(b"HTTP/"):
            continue
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.decode().strip().lower()] = v.decode("latin-1").strip()
    return Response(status, headers, body, version)


def raw_request(port, data, timeout=10.0, host="127.0.0.1"):
    """Sends raw bytes, returns everything the server sent until it closed (or timeout)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except socket.timeout:
            pass
    return b"".join(chunks)


def raw_status(port, data, **kw):
    out = raw_request(port, data, **kw)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
    return int(m.group(1)) if m else 0


class Server:
    """An h2pool instance on its own conf dir. `files` maps relative paths to text."""

    def __init__(self, yaml, files=None, expect_start=True):
        self.dir = tempfile.mkdtemp(prefix="h2pool-test-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "conf.d")
        os.mkdir(self.conf)
        self.ports = {}
        self.write("conf.d/h2pool.yaml", self.expand(yaml))
        for path, content in (files or {}).items():
            self.write(path, content)
        self.proc = None
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.expect_start = expect_start

    def port(self, name="http"):
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def expand(self, text):
        """{port:name} -> a free port; {apps} -> built test apps; {php} -> PHP scripts; {dir} -> test dir;
        {worker_user} -> `user: root` when the tests run as root (the checkout may not be readable by
        `nobody`, the default worker user of a root h2pool), else nothing."""
        text = textwrap.dedent(text)
        text = text.replace("{worker_user}", "user: root" if os.geteuid() == 0 else "")
        text = re.sub(r"\{port:(\w+)\}", lambda m: str(self.port(m.group(1))), text)
        return text.replace("{apps}", APPS).replace("{php}", PHP_APPS).replace("{dir}", self.dir)

    def write(self, rel, content, mode=None):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BIN, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        if self.expect_start:
            # the sites' port: the first one named may be the management listener's, which can
            # be up while the sites' is not yet (a request then met a refused connection)
            port = self.ports["http"] if "http" in self.ports and self.names_port(self.ports["http"]) else None
            port = port or next(iter(self.ports.values()), None)
            if port is not None:
                def ready():
                    if self.proc.poll() is not None:
                        raise AssertionError("h2pool exited at start:\n" + self.read_log())
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        return True
                    except OSError:
                        return False
                wait_until(ready, what="h2pool to listen")
        return self

    def names_port(self, port):
        """Whether a file of conf.d names this port (as it is when h2pool starts)."""
        for name in os.listdir(self.conf):
            with open(os.path.join(self.conf, name), errors="replace") as f:
                if re.search(r"(?<!\d)%d(?!\d)" % port, f.read()):
                    return True
        return False

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def url(self, path="/", name="http", scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port(name)}{path}"

    def get(self, path="/", *args, name="http", **kw):
        return curl(self.url(path, name), *args, **kw)

    def spawner(self):
        return spawner_of(self.proc.pid) if self.proc else None

    def workers(self):
        """Worker (and CGI) processes: the spawner's children."""
        if not self.proc:
            return []
        spawner = self.spawner()
        return children_of(spawner) if spawner else []

    def stop(self, timeout=40):
        if self.proc is None:
            return
        workers = self.workers()
        workers += [kid for w in workers for kid in children_of(w)]  # (a php-cgi master's children)
        spawner = self.spawner()
        if spawner:
            workers.append(spawner)  # (it does not outlive h2pool either)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # no worker outlives the server (they are killed by PID if one did, and the test fails)
        deadline = time.monotonic() + 5
        while any(process_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [p for p in workers if process_alive(p)]
        for p in survivors:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc_returncode = self.proc.returncode
        self.proc = None
        if survivors:
            raise AssertionError(f"workers {survivors} outlived h2pool")

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


SANITIZER_REPORT = re.compile(r"ERROR: \w+Sanitizer|runtime error:")


def stop_cleanly(server):
    """Stops server; fails unless it exited 0 with no sanitizer report in its log."""
    server.stop()
    log = server.read_log()
    if getattr(server, "proc_returncode", 0) != 0 or SANITIZER_REPORT.search(log):
        raise AssertionError(f"h2pool exit status {getattr(server, 'proc_returncode', None)}:\n{log[-4000:]}")


def run_h2pool(*args, timeout=20):
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=timeout, text=True)


def make_cert(directory, cn, name=None):
    """A self-signed certificate for cn (and SAN), returns (cert, key) paths."""
    name = name or cn
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def log_shows(server, pattern, timeout=15.0):
    """Waits for a line of h2pool's error log (written by a thread of its own, a moment later)."""
    return wait_until(lambda: re.search(pattern, server.read_log()), timeout=timeout, what=f"{pattern!r} in the log")


def s_client(port, *args, servername=None, timeout=20):
    """openssl s_client; returns (returncode, stdout + stderr)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    proc = subprocess.run(cmd + list(args), input=b"", capture_output=True, timeout=timeout)
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def served_cn(port, servername=None):
    """The CN of the certificate a new handshake gets."""
    rc, out = s_client(port, servername=servername)
    m = re.search(r"^subject=.*?CN\s*=\s*([^,/\n]+)", out, re.M)
    if m is None:
        raise AssertionError("no server certificate in s_client output:\n" + out)
    return m.group(1).strip()


class ServerTestCase(unittest.TestCase):
    """One h2pool for the whole class: CONF and FILES, started once, stopped cleanly (exit 0, no
    sanitizer report) at the end.  get() asks for `path` with Host HOST (any Host when None)."""
    CONF = None
    FILES = None
    HOST = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONF, cls.FILES)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(stop_cleanly, cls.server)
        cls.prepare(cls.server)
        cls.server.start()

    @classmethod
    def prepare(cls, server):
        """Runs before the server starts: files that need more than text (modes, directories)."""

    def get(self, path="/", *args, host=None, **kw):
        host = host or self.HOST
        if host is None:
            return curl(self.server.url(path), *args, **kw)
        port = self.server.port()
        return curl(f"http://{host}:{port}{path}", "--resolve", f"{host}:{port}:127.0.0.1", *args, **kw)


def main():
    unittest.main(verbosity=2)
