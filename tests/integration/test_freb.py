"""failed_request_tracing module (`modules.failed_request_tracing`, IIS's FREB): one JSON
trace per request whose status is in a configured range or that took at least `time_taken`, with
each pipeline step (module, start, duration, outcome), the pool and worker pid, and the headers
with credentials redacted; the newest `max_files` are kept."""
import glob
import http.client
import json
import os
import re

import h2ptest
from h2ptest import Server, curl, wait_until

stop_cleanly = h2ptest.stop_cleanly  # (exit 0, no sanitizer report)

CONF = """
server:
  threads: 2
  log_dir: {dir}/logs
pools:
  echo:
    command: [{apps}/echo_fcgi]
    max_processes: 1
    {worker_user}
  slow:
    command: [{apps}/slow_fcgi]
    max_processes: 1
    {worker_user}
sites:
  main:
    bindings: ["http://127.0.0.1:{port:http}"]
    http2: true
    root: {dir}/www
    handlers:
      - {path: "/app/*", pool: echo, resource: unspecified}
      - {path: "/slow/*", pool: slow, resource: unspecified}
    modules:
      request_filtering: {file_extensions: {deny: [.bak]}}
      failed_request_tracing: {status: [404, 500-599], max_files: MAX_FILES}
    locations:
      /slow:
        modules:
          failed_request_tracing: {time_taken: 1s, dir: {dir}/slowtraces}
"""

FILES = {"www/hello.txt": "hello\n", "www/old.bak": "backup\n"}

SECRETS = ["s3cr3t-basic", "s3cr3t-bearer", "s3cr3t-bare", "s3cr3t-proxy", "s3cr3t-cookie", "s3cr3t-second", "s3cr3t-set"]


def make_server(max_files=1000):
    return Server(CONF.replace("MAX_FILES", str(max_files)), FILES)


def traces(directory):
    return sorted(glob.glob(os.path.join(directory, "fr*.json")))


def default_dir(server):
    return server.path("logs/main/FailedReqLogFiles")


def load(path):
    with open(path) as f:
        return json.load(f)


def trace_urls(directory):
    """The URLs of the traces there now (one that the cap removes while it is listed is skipped)."""
    urls = []
    for path in traces(directory):
        try:
            urls.append(load(path)["url"])
        except FileNotFoundError:
            pass
    return urls


def wait_for_traces(directory, count):
    return wait_until(lambda: (lambda t: t if len(t) >= count else None)(traces(directory)), what=f"{count} traces")


def header(trace, name, which="request_headers"):
    return [h["value"] for h in trace[which] if h["name"] == name]


class TestFailedRequestTracing(h2ptest.unittest.TestCase):
    def check_redacted(self, trace):
        text = json.dumps({k: v for k, v in trace.items() if k != "url"})  # (the test's URL names the Set-Cookie)
        for secret in SECRETS:
            self.assertNotIn(secret, text)
        for value in header(trace, "cookie") + header(trace, "set-cookie", "response_headers"):
            self.assertEqual(value, "[redacted]")

    def test_a_worker_500_is_traced_with_its_steps_and_worker_and_no_credentials(self):
        with make_server() as server:
            credentials = [  # (curl args, what the trace keeps of Authorization / Proxy-Authorization)
                (["-H", "Authorization: Basic s3cr3t-basic", "-H", "Cookie: session=s3cr3t-cookie"], "Basic [redacted]"),
                (["-H", "AUTHORIZATION: Bearer s3cr3t-bearer", "-H", "Cookie: a=1; sid=s3cr3t-cookie"], "Bearer [redacted]"),
                (["-H", "Authorization: s3cr3t-bare", "-b", "x=s3cr3t-cookie", "-b", "y=s3cr3t-second"], "[redacted]"),
                (["--http2-prior-knowledge", "-H", "authorization: Basic s3cr3t-basic", "-H", "cookie: a=s3cr3t-cookie",
                  "-H", "cookie: b=s3cr3t-second"], "Basic [redacted]"),
                (["-H", "Proxy-Authorization: Basic s3cr3t-proxy", "-H", "Cookie: s3cr3t-cookie"], None),
            ]
            pids = set()
            for i, (args, _) in enumerate(credentials):
                response = curl(server.url(f"/app/fail?status=500&header=Set-Cookie:sid%3Ds3cr3t-set&n={i}"), *args)
                self.assertEqual(response.status, 500)
                pids.add(int(re.search(rb"PID=(\d+)", response.body).group(1)))
            # not traced: a 200, and a static file
            self.assertEqual(curl(server.url("/app/ok?status=200")).status, 200)
            self.assertEqual(curl(server.url("/hello.txt")).status, 200)
            paths = wait_for_traces(default_dir(server), len(credentials))
            stop_cleanly(server)
            self.assertEqual(len(traces(default_dir(server))), len(credentials))
            by_n = {int(re.search(r"n=(\d+)", load(p)["url"]).group(1)): (p, load(p)) for p in paths}
            for i, (args, kept) in enumerate(credentials):
                path, trace = by_n[i]
                self.assertEqual((trace["site"], trace["method"], trace["status"], trace["substatus"]), ("main", "GET", 500, 0))
                self.assertEqual(trace["traced_because"], ["status 500 is in 500-599"])
                self.assertEqual(trace["pool"], "echo")
                self.assertIn(trace["worker_pid"], pids)
                self.assertRegex(trace["started"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertRegex(trace["client"], r"^127\.0\.0\.1:\d+$")
                modules = [s["module"] for s in trace["steps"]]
                self.assertEqual(modules, ["request_filtering", "default_document", "fastcgi", "response"])
                for step in trace["steps"]:
                    self.assertGreaterEqual(step["duration_us"], 0)
                    self.assertGreaterEqual(step["start_us"], 0)
                self.assertEqual([s["outcome"] for s in trace["steps"]],
                                 ["passed", "passed", "answered: 500", "500: sent in full"])
                fastcgi = trace["steps"][2]
                self.assertEqual((fastcgi["pool"], fastcgi["worker_pid"]), ("echo", trace["worker_pid"]))
                self.assertEqual(header(trace, "authorization") + header(trace, "proxy-authorization"), [kept or "Basic [redacted]"])
                self.assertEqual(header(trace, "set-cookie", "response_headers"), ["[redacted]"])
                self.assertTrue(header(trace, "cookie"))
                self.check_redacted(trace)

    def test_a_module_error_is_traced_with_the_module_that_ended_it(self):
        with make_server() as server:
            self.assertEqual(curl(server.url("/old.bak"), "-H", "Authorization: Basic s3cr3t-basic").status, 404)
            [path] = wait_for_traces(default_dir(server), 1)
            stop_cleanly(server)
            trace = load(path)
            self.assertEqual((trace["status"], trace["substatus"], trace["ended_by"]), (404, 7, "request_filtering"))
            self.assertEqual(trace["steps"][0]["module"], "request_filtering")
            self.assertEqual(trace["steps"][0]["outcome"], "ended the request: 404.7")
            self.assertEqual(header(trace, "authorization"), ["Basic [redacted]"])
            self.check_redacted(trace)

    def test_a_slow_request_is_traced(self):
        with make_server() as server:
            slow_dir = server.path("slowtraces")
            # slow_fcgi sleeps 1500 ms: the request takes at least that long, whatever the machine
            response = curl(server.url("/slow/x?ms=1500"), "-H", "Authorization: Bearer s3cr3t-bearer", "-b",
                            "sid=s3cr3t-cookie")
            self.assertEqual(response.status, 200)
            [path] = wait_for_traces(slow_dir, 1)
            stop_cleanly(server)
            trace = load(path)
            self.assertEqual(trace["status"], 200)
            self.assertGreaterEqual(trace["time_taken_ms"], 1500)
            self.assertEqual(len(trace["traced_because"]), 1)
            self.assertRegex(trace["traced_because"][0], r"^time taken \d+ ms >= 1000 ms$")
            self.assertEqual(trace["pool"], "slow")
            fastcgi = [s for s in trace["steps"] if s["module"] == "fastcgi"]
            self.assertEqual(len(fastcgi), 1)
            self.assertEqual(header(trace, "authorization"), ["Bearer [redacted]"])
            self.check_redacted(trace)
            self.assertEqual(traces(default_dir(server)), [])  # the location's own dir

    def test_the_newest_max_files_are_kept(self):
        with make_server(max_files=5) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port(), timeout=20)
            for i in range(12):  # (one connection: one thread, so the traces are written in this order)
                conn.request("GET", f"/missing?n={i}")
                response = conn.getresponse()
                response.read()
                self.assertEqual(response.status, 404)
            conn.close()
            wait_until(lambda: "/missing?n=11" in trace_urls(default_dir(server)),
                       what="the last trace")
            stop_cleanly(server)
            kept = traces(default_dir(server))
            self.assertEqual(len(kept), 5)
            self.assertEqual(sorted(load(p)["url"] for p in kept), sorted(f"/missing?n={i}" for i in range(7, 12)))
            # after a restart, the traces already there count toward the cap
            server.start()
            self.assertEqual(curl(server.url("/missing?n=after")).status, 404)
            wait_until(lambda: "/missing?n=after" in trace_urls(default_dir(server)),
                       what="the trace after the restart")
            stop_cleanly(server)
            kept = traces(default_dir(server))
            self.assertEqual(len(kept), 5)
            self.assertNotIn("/missing?n=7", [load(p)["url"] for p in kept])


if __name__ == "__main__":
    h2ptest.main()
