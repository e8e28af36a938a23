"""The process model: what runs with which rights, and what dies with h2pool.

Real h2pool started as root (these tests skip otherwise), real libfcgi workers and /bin/sh CGI
scripts running as `nobody`, /proc read directly.
"""
import ctypes
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import tempfile
import subprocess
import sys
import time
import unittest

import h2ptest
from h2ptest import Server, process_alive, wait_until

AS_ROOT = os.geteuid() == 0

CONF = """
server:
  threads: 2
pools:
  hello:
    command: ["{dir}/hello_fcgi"]
    min_processes: 2
    max_processes: 2
    {pool_user}
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: "{dir}/www"
    handlers:
      - {path: "/cgi-bin/*.cgi", cgi: true}
      - {path: "/hello/*", pool: hello}
"""

# records its PID, then waits (exec: the script's own process is the one that waits)
WAIT_CGI = "#!/bin/sh\necho $$ > \"$DOCUMENT_ROOT/../run/$QUERY_STRING.pid\"\nexec sleep 600\n"


def descendants(pid):
    """Every live process below pid (children, grandchildren...), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


def make_server(pool_user=None):
    s = Server(CONF.replace("{pool_user}", f"user: {pool_user}" if pool_user else ""))
    shutil.copy(os.path.join(h2ptest.APPS, "hello_fcgi"), s.path("hello_fcgi"))
    os.chmod(s.path("hello_fcgi"), 0o755)
    s.write("www/index.html", "static\n")
    s.write("www/cgi-bin/wait.cgi", WAIT_CGI, 0o755)
    os.makedirs(s.path("run"))
    os.chmod(s.path("run"), 0o1777)
    return s


@unittest.skipUnless(AS_ROOT, "the workers' identity change needs root")
class KilledServerTest(unittest.TestCase):
    """kill -9 of h2pool leaves no worker and no CGI script behind, although they run as another
    user (the kernel clears PR_SET_PDEATHSIG at a credential change)."""

    def run_and_kill(self, signum, pool_user=None):
        s = make_server(pool_user)
        self.addCleanup(s.cleanup)
        s.start()
        self.assertEqual(s.get("/hello/x").status, 200)
        clients = []
        for tag in ("a", "b"):  # two scripts in flight, waiting
            clients.append(subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--max-time", "60",
                                             s.url(f"/cgi-bin/wait.cgi?{tag}")]))
        self.addCleanup(lambda: [c.kill() or c.wait() for c in clients])

        def script_pids():
            try:
                pids = []
                for tag in ("a", "b"):
                    with open(s.path(f"run/{tag}.pid")) as f:
                        pids.append(int(f.read().strip()))
                return pids
            except (OSError, ValueError):
                return None
        scripts = wait_until(script_pids, what="both CGI scripts to start")
        tree = descendants(s.proc.pid)
        nobody = pwd.getpwnam("nobody").pw_uid
        worker_uid = pwd.getpwnam(pool_user).pw_uid if pool_user else nobody
        workers = [p for p in tree if p not in scripts and uid_of(p) == worker_uid]
        self.assertGreaterEqual(len(workers), 2, tree)
        for p in scripts:
            self.assertIn(p, tree)
            self.assertEqual(uid_of(p), nobody)

        s.proc.send_signal(signum)
        s.proc.wait()
        everything = tree + scripts
        try:
            wait_until(lambda: not any(process_alive(p) for p in everything), timeout=10,
                       what="every worker and script to die with h2pool")
        finally:
            for p in everything:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def test_sigkill_leaves_no_worker_or_script(self):
        self.run_and_kill(signal.SIGKILL)

    def test_sigkill_with_workers_as_a_configured_user(self):
        self.run_and_kill(signal.SIGKILL, pool_user="daemon")

    def test_sigkill_twice_in_a_row(self):
        # a second server right after: nothing of the first one's lingers in between either
        self.run_and_kill(signal.SIGKILL)
        self.run_and_kill(signal.SIGKILL)


def listening_inodes():
    """Inodes of the TCP sockets in LISTEN state (IPv4 and IPv6)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A":
                    inodes.add(int(parts[9]))
    return inodes


def socket_inodes(pid):
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            out.add(int(m.group(1)))
    return out


def thread_uids(pid):
    """Every uid (real, effective, saved, filesystem) of every thread of pid."""
    uids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("Uid:") or line.startswith("Gid:"):
                    uids.update(("uid" if line[0] == "U" else "gid", int(v)) for v in line.split()[1:])
    return uids


def free_privileged_port():
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise unittest.SkipTest("no free port below 1024")


LISTEN_CONF = """
server:
  threads: 2
pools:
  hello:
    command: ["{dir}/hello_fcgi"]
    min_processes: 1
sites:
  plain:
    bindings: ["http://127.0.0.1:{port:http}", "http://*:{port:any}"]
    root: "{dir}/www"
    handlers: [{path: "/hello/*", pool: hello}]
  secure:
    bindings: ["https://127.0.0.1:{port:https}:a.test"]
    tls: {certificate: "{dir}/a.test.pem", key: "{dir}/a.test.key"}
    root: "{dir}/www"
"""


@unittest.skipUnless(AS_ROOT, "h2pool keeps no root to drop unless started as root")
class PrivilegeTest(unittest.TestCase):
    def make_server(self, extra=""):
        s = Server(LISTEN_CONF + extra)
        self.addCleanup(s.cleanup)
        shutil.copy(os.path.join(h2ptest.APPS, "hello_fcgi"), s.path("hello_fcgi"))
        os.chmod(s.path("hello_fcgi"), 0o755)
        s.write("www/index.html", "static\n")
        cert, key = h2ptest.make_cert(s.dir, "a.test")
        os.chmod(key, 0o600)  # root's alone: the front end cannot read it, the spawner reads it
        return s

    def check_no_root_listener(self, s):
        listening = listening_inodes()
        tree = [s.proc.pid] + descendants(s.proc.pid)
        holders = [p for p in tree if socket_inodes(p) & listening]
        self.assertIn(s.proc.pid, holders)  # the front end accepts
        www = pwd.getpwnam("www-data")
        for p in holders:
            ids = thread_uids(p)
            self.assertNotIn(("uid", 0), ids, f"process {p} holds a listening socket and has uid 0")
            self.assertNotIn(("gid", 0), ids, f"process {p} holds a listening socket and has gid 0")
        self.assertEqual(thread_uids(s.proc.pid), {("uid", www.pw_uid), ("gid", www.pw_gid)})
        # the privileged part holds none, and is the only process of the tree that is root
        spawner = s.spawner()
        self.assertIsNotNone(spawner)
        self.assertEqual(socket_inodes(spawner) & listening, set())
        self.assertEqual([p for p in tree if ("uid", 0) in thread_uids(p)], [spawner])

    def https_ok(self, s):
        r = h2ptest.curl(f"https://a.test:{s.port('https')}/index.html", "-k", "--resolve",
                         f"a.test:{s.port('https')}:127.0.0.1")
        return r.status == 200 and r.body == b"static\n"

    def test_no_root_process_or_thread_holds_a_listener(self):
        s = self.make_server()
        s.start()
        self.assertEqual(s.get("/index.html").status, 200)
        self.assertEqual(s.get("/hello/x").status, 200)
        self.assertTrue(self.https_ok(s))  # the key (0600 root) came from the spawner
        self.check_no_root_listener(s)

    def test_a_privileged_port_added_by_a_reload(self):
        s = self.make_server()
        s.start()
        port = free_privileged_port()
        with open(s.path("conf.d/h2pool.yaml")) as f:
            text = f.read()
        text = text.replace('"http://*:%d"]' % s.port("any"), '"http://*:%d", "http://127.0.0.1:%d"]' % (s.port("any"), port))
        s.write("conf.d/h2pool.yaml", text)
        wait_until(lambda: "configuration reloaded" in s.read_log(), what="the reload")
        r = h2ptest.curl(f"http://127.0.0.1:{port}/index.html")
        self.assertEqual(r.status, 200, s.read_log())
        self.assertTrue(self.https_ok(s))
        self.check_no_root_listener(s)

    def test_reloads_keep_a_root_owned_error_log(self):
        # the start opens the error log as root; a reload (by server.user) neither reopens it nor
        # may refuse the configuration because server.user could not open it itself
        s = self.make_server()
        os.mkdir(s.path("log"), 0o700)  # root's alone, like /var/log/h2pool
        log = s.path("log/error.log")
        with open(s.path("conf.d/h2pool.yaml")) as f:
            text = f.read()
        text = text.replace("  threads: 2\n", '  threads: 2\n  error_log: "%s"\n' % log)
        s.write("conf.d/h2pool.yaml", text)
        s.start()
        read = lambda: open(log).read()
        wait_until(lambda: "started" in read(), what="the start in the error log")
        for how, expect in (("a file change", "configuration reloaded \\(conf.d"), ("SIGHUP", "configuration reloaded \\(SIGHUP"),
                            ("another error_log", "refused")):
            with self.subTest(how=how):
                before = len(re.findall(expect, read()))
                if how == "SIGHUP":
                    s.proc.send_signal(signal.SIGHUP)
                else:
                    s.write("conf.d/h2pool.yaml", text.replace(log, s.path("log/other.log")) if how == "another error_log"
                            else text + "# changed\n")
                wait_until(lambda: len(re.findall(expect, read())) > before, what=expect)
        # a changed error_log is still checked, as server.user: it could not create that one
        self.assertRegex(read(), r"server\.error_log: cannot access .*other\.log")
        self.assertEqual(s.get("/index.html").status, 200)

    def test_front_end_user_and_group_from_the_configuration(self):
        s = self.make_server()
        with open(s.path("conf.d/h2pool.yaml")) as f:
            text = f.read()
        s.write("conf.d/h2pool.yaml", text.replace("  threads: 2\n", "  threads: 2\n  user: daemon\n  group: nogroup\n"))
        s.start()
        self.assertEqual(s.get("/index.html").status, 200)
        ids = thread_uids(s.proc.pid)
        self.assertEqual(ids, {("uid", pwd.getpwnam("daemon").pw_uid), ("gid", __import__("grp").getgrnam("nogroup").gr_gid)})

    def test_front_end_as_root_is_refused(self):
        s = self.make_server()
        with open(s.path("conf.d/h2pool.yaml")) as f:
            text = f.read()
        s.write("conf.d/h2pool.yaml", text.replace("  threads: 2\n", "  threads: 2\n  user: root\n"))
        s.expect_start = False
        s.start()
        self.assertNotEqual(s.proc.wait(30), 0)
        self.assertIn("never runs as root", s.read_log())


SECRET = "root-only secret 7f3a9c\n"

SYMLINK_CONF = """
server:
  threads: 2
sites:
  race:
    bindings: ["http://127.0.0.1:{port:race}"]
    root: "{dir}/race"
  follow:
    bindings: ["http://127.0.0.1:{port:follow}"]
    root: "{dir}/follow"
    follow_symlinks: true
"""

# The attacker: exchanges each given path with its ".swap" sibling, over and over, until the time
# is up (renameat2 RENAME_EXCHANGE: the name never goes missing, it is the real file or directory
# one moment and the symlink the next).
RACER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
until, paths = time.monotonic() + float(sys.argv[1]), [p.encode() for p in sys.argv[2:]]
while time.monotonic() < until:
    for p in paths:
        if libc.renameat2(-100, p, -100, p + b".swap", 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
            sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
"""


def race(testcase, port, url, swapped, secret, seconds, user=None):
    """Asks for `url` on one keep-alive connection while a racer (as `user`) swaps `swapped`;
    fails if `secret` is ever sent.  Returns the statuses seen {status: count}."""
    # (the system's interpreter: the one running the tests may live where `user` cannot go)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    kw = {"user": user, "group": "nogroup"} if user else {}
    racer = subprocess.Popen([python, "-c", RACER, str(seconds)] + list(swapped), **kw)
    testcase.addCleanup(lambda: racer.poll() is None and (racer.kill() or racer.wait()))
    statuses = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while racer.poll() is None:
        conn.request("GET", url)
        r = conn.getresponse()
        body = r.read()
        testcase.assertNotIn(secret, body, f"{url}: the file outside the root was sent")
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.close()
    testcase.assertEqual(racer.wait(), 0)
    return statuses


@unittest.skipUnless(AS_ROOT, "a root-only file needs root")
class SymlinkToRootOnlyFileTest(unittest.TestCase):
    """Whoever can write into a document root never gets a file only root can read: the front end
    that opens static files is not root."""

    @classmethod
    def setUpClass(cls):
        s = cls.server = Server(SYMLINK_CONF)
        cls.addClassCleanup(s.cleanup)
        cls.secret = s.write("secret/secret.txt", SECRET, 0o600)
        os.makedirs(s.path("private"))
        cls.private = s.write("private/secret.txt", SECRET, 0o644)
        os.chmod(s.path("private"), 0o700)  # a readable file in a directory only root enters
        s.write("public.txt", "public outside the root\n", 0o644)
        os.makedirs(s.path("race"))
        os.chown(s.path("race"), pwd.getpwnam("nobody").pw_uid, -1)
        s.write("follow/index.html", "follow\n")
        os.symlink(cls.secret, s.path("follow/abs.txt"))
        os.symlink("../secret/secret.txt", s.path("follow/rel.txt"))
        os.symlink(s.path("private"), s.path("follow/dirlink"))
        os.symlink(s.path("secret"), s.path("follow/secretdir"))
        os.symlink(s.path("public.txt"), s.path("follow/public.txt"))
        s.start()

    def assert_not_served(self, r):
        self.assertNotIn(SECRET.strip().encode(), r.body)
        self.assertIn(r.status, (403, 404))

    def test_follow_symlinks_to_root_only_files(self):
        s = self.server
        # control: a symlink out of the root to a file anyone may read is served
        r = s.get("/public.txt", name="follow")
        self.assertEqual((r.status, r.body), (200, b"public outside the root\n"))
        for path in ("/abs.txt", "/rel.txt", "/dirlink/secret.txt", "/secretdir/secret.txt"):
            for extra in ([], ["-r", "0-5"], ["--http2-prior-knowledge"], ["-I"]):
                with self.subTest(path=path, extra=extra):
                    self.assert_not_served(s.get(path, *extra, name="follow"))

    def test_racing_symlink_swaps_never_serve_the_secret(self):
        s = self.server
        # race/target.txt <-> a symlink to the secret; race/dir <-> a symlink to the secret's directory
        s.write("race/target.txt", "public\n", 0o644)
        os.symlink(self.secret, s.path("race/target.txt.swap"))
        s.write("race/dir/secret.txt", "public\n", 0o644)
        os.symlink(os.path.dirname(self.secret), s.path("race/dir.swap"))
        for url, swapped in (("/target.txt", "race/target.txt"), ("/dir/secret.txt", "race/dir")):
            with self.subTest(url=url):
                statuses = race(self, s.port("race"), url, [s.path(swapped)], SECRET.strip().encode(), 2, user="nobody")
                self.assertIn(200, statuses)  # the public file was served in between
                self.assertEqual(set(statuses) - {200, 403, 404}, set(), statuses)


READABLE_SECRET = b"secret the front end can read 52e1d0\n"

RACE_CONF = """
server:
  threads: 2
sites:
  race:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: "{dir}/www"
    modules:
      compression: {static: true, types: [text/*]}
"""


class SymlinkSwapRaceTest(unittest.TestCase):
    """The file served is the file checked.  Someone who can write into a document root swaps a
    path component between a real file or directory and a symlink out of the root while requests
    ask for it: with follow_symlinks: false, a file outside the root is never sent, even one the
    front end's user can read.  (Before h2pool sent from the checked descriptor, libh2o opened
    the file again by name after the check, and these races won.)"""

    @classmethod
    def setUpClass(cls):
        s = cls.server = Server(RACE_CONF)
        cls.addClassCleanup(s.cleanup)
        cls.addClassCleanup(h2ptest.stop_cleanly, s)
        for rel in ("outside/secret.txt", "outside/d/secret.txt", "outside/m/x/y/secret.txt"):
            s.write(rel, READABLE_SECRET, 0o644)
        public = "public\n"
        # the last component: a file <-> a symlink to the secret (absolute, relative)
        s.write("www/file.txt", public, 0o644)
        os.symlink(s.path("outside/secret.txt"), s.path("www/file.txt.swap"))
        s.write("www/rel.txt", public, 0o644)
        os.symlink("../outside/secret.txt", s.path("www/rel.txt.swap"))
        # the directory holding the file <-> a symlink to a directory outside holding a secret of that name
        s.write("www/d/secret.txt", public, 0o644)
        os.symlink(s.path("outside/d"), s.path("www/d.swap"))
        # a directory in the middle of the path (relative symlink)
        s.write("www/m/x/y/secret.txt", public, 0o644)
        os.symlink("../outside/m", s.path("www/m.swap"))
        # behind an absolute symlink that points inside the root (the realpath path), the real
        # directory it names is swapped
        s.write("www/real/secret.txt", public, 0o644)
        os.symlink(s.path("outside/d"), s.path("www/real.swap"))
        os.symlink(s.path("www/real"), s.path("www/abs"))
        # a precompressed sibling swapped (compression on: the .gz is what a gzip client gets)
        s.write("www/style.css", "body{}\n" * 100, 0o644)
        s.write("www/style.css.gz", public, 0o644)
        os.symlink(s.path("outside/secret.txt"), s.path("www/style.css.gz.swap"))
        for rel in ("outside", "outside/d", "outside/m", "outside/m/x", "outside/m/x/y"):
            os.chmod(s.path(rel), 0o755)
        s.start()

    def test_swapped_components_never_lead_out_of_the_root(self):
        s = self.server
        for url, swapped in (("/file.txt", ["www/file.txt"]),
                             ("/rel.txt", ["www/rel.txt"]),
                             ("/d/secret.txt", ["www/d"]),
                             ("/m/x/y/secret.txt", ["www/m"]),
                             ("/abs/secret.txt", ["www/real"])):
            with self.subTest(url=url):
                statuses = race(self, s.port(), url, [s.path(p) for p in swapped], READABLE_SECRET.strip(), 2)
                self.assertIn(200, statuses)  # the public file was served in between
                self.assertIn(403, statuses)  # and the symlink was seen
                self.assertEqual(set(statuses) - {200, 403}, set(), statuses)

    def test_swapped_precompressed_sibling(self):
        s = self.server
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        racer = subprocess.Popen([python, "-c", RACER, "2", s.path("www/style.css.gz")])
        self.addCleanup(lambda: racer.poll() is None and (racer.kill() or racer.wait()))
        conn = http.client.HTTPConnection("127.0.0.1", s.port(), timeout=10)
        encodings = set()
        while racer.poll() is None:
            conn.request("GET", "/style.css", headers={"Accept-Encoding": "gzip"})
            r = conn.getresponse()
            body = r.read()
            self.assertNotIn(READABLE_SECRET.strip(), body)
            self.assertEqual(r.status, 200)
            encodings.add(r.getheader("content-encoding"))
        conn.close()
        self.assertEqual(racer.wait(), 0)
        self.assertIn("gzip", encodings)  # the sibling was sent while it was the real file


# ---- a front end that was taken over -------------------------------------------------------

# privsep/privsep.h: h2p_ps_msg_t and the request types
MSG = struct.Struct("<IiqQiI")
SPAWN_WORKER, KILL, BIND, OPEN_FILE, RELOAD, CGI_CHANNEL, SPAWN_CGI, KILL_CGI, CGI_SPAWNED, ANSWER = range(1, 11)

EVIL_CONF = """
server:
  threads: 1
pools:
  p:
    command: ["{dir}/hello_fcgi"]
sites:
  t:
    bindings: ["http://127.0.0.1:{port:http}"]
    root: "{dir}/www"
    handlers: [{path: "/cgi-bin/*.cgi", cgi: true}, {path: "/p/*", pool: p}]
  plain:
    bindings: ["http://127.0.0.1:{port:plain}"]
    root: "{dir}/plain"
"""


def steal_fd(pid, fd):
    """A copy of another process's descriptor (pidfd_getfd, Linux 5.6; root may)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        raise unittest.SkipTest("no pidfd_open")
    try:
        new = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
        if new < 0:
            raise unittest.SkipTest("no pidfd_getfd")
        return new
    finally:
        os.close(pidfd)


def command_channel_fd(pid):
    """The front end's first SOCK_SEQPACKET socket: the command channel to the spawner."""
    seqpacket = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[4] == "0005":
                seqpacket.add(int(parts[6]))
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    for fd in fds:
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m and int(m.group(1)) in seqpacket:
            return fd
    raise AssertionError("no command channel")


def send(sock, kind, payload=b"", fds=(), value=0, pid=0, cookie=0):
    data = MSG.pack(kind, value, pid, cookie, 0, len(payload)) + payload
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock, timeout=10):
    """(type, value, pid, cookie, payload, fds)"""
    sock.settimeout(timeout)
    data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
    kind, value, pid, cookie, _, length = MSG.unpack_from(data)
    return kind, value, pid, cookie, data[MSG.size:MSG.size + length], fds


@unittest.skipUnless(AS_ROOT, "reading another process's descriptors needs root")
class CompromisedFrontEndTest(unittest.TestCase):
    """What the privileged part does for a front end that was taken over: only what the
    configuration it loaded itself allows.  The test plays such a front end on a copy of the
    real front end's command channel."""

    @classmethod
    def setUpClass(cls):
        s = cls.server = Server(EVIL_CONF)
        cls.addClassCleanup(s.cleanup)
        shutil.copy(os.path.join(h2ptest.APPS, "hello_fcgi"), s.path("hello_fcgi"))
        os.chmod(s.path("hello_fcgi"), 0o755)
        s.write("www/cgi-bin/ok.cgi", "#!/bin/sh\nid -u\n", 0o755)
        s.write("plain/x.cgi", "#!/bin/sh\nid -u\n", 0o755)
        s.write("outside.cgi", "#!/bin/sh\nid -u\n", 0o755)
        os.symlink("/usr/bin/id", s.path("www/cgi-bin/id.cgi"))
        s.start()
        fd = steal_fd(s.proc.pid, command_channel_fd(s.proc.pid))
        cls.channel = socket.socket(fileno=fd)
        cls.addClassCleanup(cls.channel.close)

    def ask(self, kind, payload=b"", fds=(), **kw):
        send(self.channel, kind, payload, fds, **kw)
        answer = receive(self.channel)
        self.assertEqual(answer[0], ANSWER)
        for fd in answer[5]:
            self.addCleanup(os.close, fd)
        return answer

    def pipe(self):
        r, w = os.pipe()

        def close(fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.addCleanup(close, r)
        self.addCleanup(close, w)
        return r, w

    def test_workers_only_of_pools_it_loaded(self):
        listen = socket.socket(socket.AF_UNIX)
        self.addCleanup(listen.close)
        # a real listening socket, so that the control worker lives until it is killed
        path = os.path.join(tempfile.mkdtemp(prefix="h2pool-procmodel-"), "w.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        listen.bind(path)
        listen.listen(16)
        _, out = self.pipe()
        for name in (b"evil\0", b"\0", b"p/../evil\0", b"P\0"):
            with self.subTest(pool=name):
                _, value, pid, _, _, _ = self.ask(SPAWN_WORKER, name, [listen.fileno(), out])
                self.assertEqual((value, pid), (1, 0))  # EPERM, nothing started
        # control: the pool it loaded is spawned (so the refusals above are the policy's)
        _, value, pid, _, text, _ = self.ask(SPAWN_WORKER, b"p\0", [listen.fileno(), out])
        self.assertGreater(pid, 0, text)
        self.assertEqual(uid_of(pid), pwd.getpwnam("nobody").pw_uid)
        send(self.channel, KILL, value=signal.SIGKILL, pid=pid)
        wait_until(lambda: not process_alive(pid), what="the worker to be killed")

    def test_signals_only_its_own_children(self):
        victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.addCleanup(lambda: victim.kill() or victim.wait())
        for sig in (signal.SIGKILL, signal.SIGTERM):
            send(self.channel, KILL, value=sig, pid=victim.pid)
            send(self.channel, KILL, value=sig, pid=-victim.pid)
        channel = self.cgi_channel()
        for cookie in (0, 1, victim.pid):
            send(channel, KILL_CGI, value=signal.SIGKILL, cookie=cookie)
        self.spawn_cgi(channel, "/bin/true", 1 << 62)  # (an answer: every request before it was handled)
        self.ask(OPEN_FILE, b"/nonexistent\0")  # (an answer: every request before it was handled)
        self.assertIsNone(victim.poll())

    def test_binds_only_addresses_it_loaded(self):
        for family, addr in ((socket.AF_INET, ("127.0.0.1", h2ptest.free_port())), (socket.AF_INET, ("0.0.0.0", 80)),
                             (socket.AF_INET6, ("::", self.server.port("http")))):
            with self.subTest(addr=addr):
                sock = socket.socket(family, socket.SOCK_STREAM)
                self.addCleanup(sock.close)
                raw = socket.inet_pton(family, addr[0])
                if family == socket.AF_INET:
                    sockaddr = struct.pack("<H", family) + struct.pack(">H", addr[1]) + raw + b"\0" * 8
                else:
                    sockaddr = struct.pack("<H", family) + struct.pack(">H", addr[1]) + b"\0" * 4 + raw + b"\0" * 4
                _, value, _, _, _, _ = self.ask(BIND, sockaddr, [sock.fileno()])
                self.assertEqual(value, 1)  # EPERM
                self.assertEqual(sock.getsockname()[1], 0)  # not bound
        # a datagram socket on a listed address: not a listener
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        sockaddr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", self.server.port("plain")) + \
            socket.inet_aton("127.0.0.1") + b"\0" * 8
        _, value, _, _, _, _ = self.ask(BIND, sockaddr, [udp.fileno()])
        self.assertNotEqual(value, 0)
        self.assertEqual(udp.getsockname()[1], 0)

    def test_opens_only_certificates_and_keys_it_loaded(self):
        for path in (b"/etc/shadow", b"/root/.bash_history", self.server.path("hello_fcgi").encode(),
                     self.server.conf.encode() + b"/h2pool.yaml", b"/etc/../etc/shadow"):
            with self.subTest(path=path):
                _, value, _, _, _, fds = self.ask(OPEN_FILE, path + b"\0")
                self.assertEqual((value, fds), (1, []))

    def cgi_channel(self):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(mine.close)
        send(self.channel, CGI_CHANNEL, fds=[theirs.fileno()])
        theirs.close()
        return mine

    def spawn_cgi(self, channel, path, cookie):
        stdin_r, _ = self.pipe()
        out_r, out_w = self.pipe()
        _, err_w = self.pipe()
        send(channel, SPAWN_CGI, path.encode() + b"\0PATH=/usr/bin:/bin\0", [stdin_r, out_w, err_w], cookie=cookie)
        kind, value, pid, answered_cookie, _, _ = receive(channel)
        self.assertEqual((kind, answered_cookie), (CGI_SPAWNED, cookie))
        return value, pid, out_r, out_w

    def test_cgi_only_beneath_a_cgi_root(self):
        channel = self.cgi_channel()
        d = self.server.dir
        for i, path in enumerate(["/bin/sh", "/usr/bin/id", f"{d}/plain/x.cgi", f"{d}/outside.cgi",
                                  f"{d}/www/cgi-bin/../../outside.cgi", f"{d}/www/cgi-bin/id.cgi", f"{d}/hello_fcgi"]):
            with self.subTest(path=path):
                value, pid, _, _ = self.spawn_cgi(channel, path, 1 << 60 | i)
                self.assertEqual((value, pid), (1, 0))
        # control: a script beneath the root that maps cgi: true runs, as nobody
        value, pid, out_r, out_w = self.spawn_cgi(channel, f"{d}/www/cgi-bin/ok.cgi", 1 << 61)
        self.assertEqual(value, 0)
        self.assertGreater(pid, 0)
        os.close(out_w)
        with os.fdopen(os.dup(out_r)) as f:
            self.assertEqual(f.read().strip(), str(pwd.getpwnam("nobody").pw_uid))


if __name__ == "__main__":
    h2ptest.main()
