"""Password checks run on the crypt pool, never on an event loop (README, "modules": authentication).

A storm of wrong passwords against an expensive bcrypt user does not stop other sites; a client
that leaves while its check waits (HTTP/1.1, HTTP/2 connection close, HTTP/2 stream reset) leaves
h2pool healthy; the queue of checks is bounded (503 beyond it).

HTTP/2 is spoken with raw frames here (curl cannot reset one stream of a connection): requests
are sent with literal, non-Huffman HPACK fields; answers are told apart by their bodies.
"""
import socket
import select
import threading
import time
import unittest

import h2ptest
from h2ptest import Server
from test_auth import basic, bcrypt_hash

stop_cleanly = h2ptest.stop_cleanly

CONF = """
server:
  threads: {threads}
sites:
  locked:
    bindings: ["http://127.0.0.1:{port:http}:locked.test"]
    root: {dir}/www
    http2: true
    modules:
      authentication:
        anonymous: false
        basic: {users_file: ../users.htpasswd}
  static:
    bindings: ["http://127.0.0.1:{port:http}:static.test"]
    root: {dir}/www
    http2: true
"""

HELLO = b"hello from h2pool\n"
INVALID = b"invalid credentials"
BUSY = b"too many password checks are waiting"


def start_server(testcase, threads):
    """`slow` has a bcrypt cost of 12 (the cap: about a quarter of a second a check), `fast` 4."""
    files = {"www/hello.txt": HELLO.decode(),
             "users.htpasswd": f"slow:{bcrypt_hash('slow-pw', cost=12)}\nfast:{bcrypt_hash('fast-pw')}\n"}
    server = Server(CONF.replace("{threads}", str(threads)), files)
    testcase.addCleanup(server.cleanup)
    server.start()
    return server


def http1_request(host, path="/hello.txt", auth=None):
    extra = f"Authorization: {auth}\r\n" if auth else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()


def read_all(sock):
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def status_of(response):
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


# ---- a minimal HTTP/2 client ------------------------------------------------------------------

DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(type_, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([type_, flags]) + stream.to_bytes(4, "big") + payload


def hpack_string(s):
    s = s.encode()
    assert len(s) < 127
    return bytes([len(s)]) + s


def hpack_literal(name, value):
    """A literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_string(name) + hpack_string(value)


class H2Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        self.buf = b""
        self.bodies, self.ended, self.reset = {}, set(), set()

    def request(self, stream, host, auth=None, path="/hello.txt"):
        block = b"".join(hpack_literal(n, v) for n, v in ((":method", "GET"), (":scheme", "http"), (":authority", host),
                                                          (":path", path)))
        if auth is not None:
            block += hpack_literal("authorization", auth)
        self.sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, stream, block))

    def cancel(self, stream):
        self.sock.sendall(frame(RST_STREAM, 0, stream, (8).to_bytes(4, "big")))  # CANCEL

    def read_until(self, done, timeout=60):
        """Reads frames until done(self) or the deadline; answers the server's SETTINGS."""
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"HTTP/2 answers incomplete: ended {sorted(self.ended)}")
            self.sock.settimeout(0.2)  # (done may turn true by another connection's answers)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("the server closed the HTTP/2 connection")
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                type_, flags, stream = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
                if type_ == SETTINGS and not flags & ACK:
                    self.sock.sendall(frame(SETTINGS, ACK, 0))
                elif type_ == DATA:
                    self.bodies[stream] = self.bodies.get(stream, b"") + payload
                elif type_ == RST_STREAM:
                    self.reset.add(stream)
                if type_ in (DATA, HEADERS) and flags & END_STREAM:
                    self.ended.add(stream)

    def close(self):
        self.sock.close()


# ---- the tests -------------------------------------------------------------------------------

class PasswordStormTest(unittest.TestCase):
    """16 wrong passwords at once for a bcrypt cost-12 user, on a server with ONE event loop: its
    static site keeps answering while the checks run, and every check answers 401."""

    STORM = 16

    def test_static_requests_are_served_during_a_storm(self):
        server = start_server(self, threads=1)
        port = server.port()
        storm = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(self.STORM)]
        for i, s in enumerate(storm):  # each password differs: no two checks share a computation
            s.sendall(http1_request("locked.test", auth=basic("slow", f"wrong-{i}")))
        time.sleep(0.1)  # (the loop has read them; a loop that computed them itself would be in the first one now)

        static_statuses, before_first_answer = [], None
        pending, answers = list(storm), []
        while pending:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(http1_request("static.test"))
                static_statuses.append(status_of(read_all(s)))
            ready, _, _ = select.select(pending, [], [], 0)
            if ready and before_first_answer is None:
                before_first_answer = len(static_statuses) - 1
            for s in ready:
                answers.append(read_all(s))
                pending.remove(s)
                s.close()

        self.assertEqual(static_statuses, [200] * len(static_statuses))
        self.assertEqual([status_of(a) for a in answers], [401] * self.STORM, answers[:2])
        for a in answers:
            self.assertIn(b"\r\nwww-authenticate: basic realm=\"locked\"\r\n", a.lower())
        # a quarter of a second per check: the static site answered while the first one was computed
        self.assertGreater(before_first_answer, 0, "no static request was answered before the first check ended")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:  # and the right password still passes
            s.sendall(http1_request("locked.test", auth=basic("slow", "slow-pw")))
            self.assertEqual(status_of(read_all(s)), 200)
        stop_cleanly(server)

    def test_storm_over_http2_and_the_right_password_among_it(self):
        """The same over one HTTP/2 connection: 16 streams of wrong passwords and one right one."""
        server = start_server(self, threads=2)
        h2 = H2Connection(server.port())
        streams = [1 + 2 * i for i in range(self.STORM + 2)]
        for i, stream in enumerate(streams[:self.STORM]):
            h2.request(stream, "locked.test", basic("slow", f"wrong-{i}"))
        h2.request(streams[-2], "locked.test", basic("slow", "slow-pw"))
        h2.request(streams[-1], "static.test")
        h2.read_until(lambda c: set(streams) <= c.ended)
        for stream in streams[:self.STORM]:
            self.assertIn(INVALID, h2.bodies.get(stream, b""), stream)
        self.assertEqual(h2.bodies.get(streams[-2]), HELLO)
        self.assertEqual(h2.bodies.get(streams[-1]), HELLO)
        h2.close()
        stop_cleanly(server)


class ClientLeavesTest(unittest.TestCase):
    """A client leaves while its check waits behind others: h2pool neither crashes nor touches the
    gone request (the ASan build checks the latter), and goes on serving."""

    def setUp(self):
        self.server = start_server(self, threads=2)
        self.port = self.server.port()

    def busy_pool(self, n=8):
        """Wrong passwords for the cost-12 user, so the checks sent next wait in the queue."""
        storm = [socket.create_connection(("127.0.0.1", self.port), timeout=60) for _ in range(n)]
        for i, s in enumerate(storm):
            s.sendall(http1_request("locked.test", auth=basic("slow", f"busy-{i}")))
        return storm

    def assert_storm_answered(self, storm):
        for s in storm:
            self.assertEqual(status_of(read_all(s)), 401)
            s.close()

    def assert_healthy(self):
        self.assertIsNone(self.server.proc.poll(), "h2pool died:\n" + self.server.read_log()[-3000:])
        r = self.server.get("/hello.txt", "-H", "Host: locked.test", "-H", "Authorization: " + basic("fast", "fast-pw"))
        self.assertEqual(r.status, 200, r)
        r = self.server.get("/hello.txt", "-H", "Host: static.test", "--http2-prior-knowledge")
        self.assertEqual(r.status, 200, r)

    # the right password too: a check that passes would go on with the rest of the chain
    CREDENTIALS = [("slow", "slow-pw"), ("slow", "wrong"), ("nobody", "x")]

    def test_http1_client_closes(self):
        storm = self.busy_pool()
        for user, password in self.CREDENTIALS:
            with socket.create_connection(("127.0.0.1", self.port)) as s:
                s.sendall(http1_request("locked.test", auth=basic(user, password)))
        self.assert_storm_answered(storm)
        self.assert_healthy()
        stop_cleanly(self.server)

    def test_http2_connection_closes(self):
        storm = self.busy_pool()
        for user, password in self.CREDENTIALS:
            h2 = H2Connection(self.port)
            h2.request(1, "locked.test", basic(user, password))
            h2.request(3, "locked.test", basic(user, password))  # the same check twice: they share it
            h2.read_until(lambda c: True)
            h2.close()
        self.assert_storm_answered(storm)
        self.assert_healthy()
        stop_cleanly(self.server)

    def test_http2_stream_reset_keeps_the_connection(self):
        storm = self.busy_pool()
        h2 = H2Connection(self.port)
        stream = 1
        for user, password in self.CREDENTIALS:
            h2.request(stream, "locked.test", basic(user, password))
            h2.request(stream + 2, "locked.test", basic(user, password))  # shares the check that is cancelled
            h2.cancel(stream)
            stream += 4
        # the connection goes on: a check on it passes, another fails
        h2.request(stream, "locked.test", basic("fast", "fast-pw"))
        h2.request(stream + 2, "locked.test", basic("fast", "wrong"))
        h2.read_until(lambda c: {stream, stream + 2} <= c.ended)
        self.assertEqual(h2.bodies.get(stream), HELLO)
        self.assertIn(INVALID, h2.bodies.get(stream + 2, b""))
        # the stream that shared a cancelled check got its own answer
        h2.read_until(lambda c: {3, 7, 11} <= c.ended)
        self.assertEqual(h2.bodies.get(3), HELLO)
        self.assertIn(INVALID, h2.bodies.get(7, b""))
        self.assertIn(INVALID, h2.bodies.get(11, b""))
        for cancelled in (1, 5, 9):
            self.assertNotIn(cancelled, h2.bodies)
        h2.close()
        self.assert_storm_answered(storm)
        self.assert_healthy()
        stop_cleanly(self.server)


class QueueBoundTest(unittest.TestCase):
    """More checks than the queue holds (1024) get 503 with Retry-After at once.  The clients then
    leave, and their queued checks are dropped, not computed: a new check is answered soon after,
    not after the thousand others (four minutes of bcrypt)."""

    CONNECTIONS, STREAMS = 11, 100  # 1100 checks; libh2o runs 100 streams of a connection at a time

    def test_checks_beyond_the_queue_get_503(self):
        server = start_server(self, threads=2)
        port = server.port()
        conns = [H2Connection(port) for _ in range(self.CONNECTIONS)]
        for c, h2 in enumerate(conns):
            for i in range(self.STREAMS):
                h2.request(1 + 2 * i, "locked.test", basic("slow", f"storm-{c}-{i}"))

        def busy_answers():
            return sum(BUSY in body for h2 in conns for body in h2.bodies.values())

        def read(h2):
            try:
                h2.read_until(lambda _: busy_answers() != 0, timeout=60)
            except Exception as e:  # (reported below)
                errors.append(e)
        errors = []
        readers = [threading.Thread(target=read, args=(h2,)) for h2 in conns]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        self.assertEqual(errors, [])
        for h2 in conns:
            for stream, body in h2.bodies.items():
                self.assertTrue(BUSY in body or INVALID in body, body)

        # the queue is full: more checks (HTTP/1.1, to read the header) are refused at once
        more = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(20)]
        for i, s in enumerate(more):
            s.sendall(http1_request("locked.test", auth=basic("slow", f"more-{i}")))
        # read them while the queue is still full (a refusal comes at once; a check that found a
        # place would take minutes: it is not waited for), then let the thousand waiting go
        answers = []
        for s in more:
            s.settimeout(10)
            try:
                answers.append(read_all(s))
            except socket.timeout:
                answers.append(b"")
        for h2 in conns:  # the thousand waiting checks are dropped
            h2.close()
        for s in more:
            s.close()
        answers = [a for a in answers if a]
        self.assertEqual({status_of(a) for a in answers} - {401, 503}, set(), answers[:1])
        refused = [a for a in answers if status_of(a) == 503]
        self.assertNotEqual(refused, [], "no check was refused with the queue full")
        for a in refused:
            self.assertIn(b"\r\nretry-after: 5\r\n", a.lower())
            self.assertIn(BUSY, a)
        h2ptest.log_shows(server, "password checks are waiting: more get 503")

        # (503 until the server has seen every connection close, as Retry-After tells a client)
        def check(user, password, status):
            r = server.get("/hello.txt", "-H", "Host: locked.test", "-H", "Authorization: " + basic(user, password), timeout=60)
            self.assertIn(r.status, (status, 503), r)
            return r.status == status
        h2ptest.wait_until(lambda: check("fast", "fast-pw", 200), timeout=30, interval=0.1, what="a check to pass")
        h2ptest.wait_until(lambda: check("slow", "wrong", 401), timeout=30, interval=0.1, what="a check to fail")
        stop_cleanly(server)


if __name__ == "__main__":
    h2ptest.main()
