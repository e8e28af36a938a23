"""The process model: what runs with which rights, and what dies with h2pool.

Real h2pool started as root (these tests skip otherwise), real libfcgi workers and /bin/sh CGI
scripts running as `nobody`, /proc read directly.
"""
import os
import pwd
import shutil
import signal
import subprocess
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


if __name__ == "__main__":
    h2ptest.main()
