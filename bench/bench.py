#!/usr/bin/env python3
"""h2pool vs nginx vs h2o on the same backends, interleaved rounds, medians, ratios.

Every server runs with one worker thread on 127.0.0.1; the load generator (wrk, h2load) runs
on the same machine.  Absolute numbers move from run to run on a shared machine: read the
ratios, which are taken within one run.
"""
import argparse
import base64
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
WORK = tempfile.mkdtemp(prefix="h2pool-bench-")
os.chmod(WORK, 0o755)
PORTS = {"h2pool": (18180, 18543), "nginx": (18181, 18544), "h2o": (18182, 18545)}
MODULES_ON, MODULES_OFF = 18190, 18191
LOGGING_ON, LOGGING_OFF = 18192, 18193
STORM_PORT = 18194  # h2pool's site behind basic authentication, for the password storm
STORM_CONNECTIONS = 16
REWRITE_PORT = 18195  # h2pool alone: a PHP front controller behind 20 rewrite rules
CACHED_BARE_PORTS = (18196, 18197)  # h2pool's cached FastCGI hit vs a bare libh2o handler (bench/bare_h2o.c)
WORKERS = 4
THREADS = [1]  # front-end threads of each side (--threads)
procs = []
started = {}  # name -> pid of what start() started


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def wait_port(port, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def check_ports_free():
    """h2pool listens with SO_REUSEPORT: a second benchmark on this machine (same user) would share
    its ports silently and each would measure a mix of both servers."""
    for port in [p for pair in PORTS.values() for p in pair] + [MODULES_ON, MODULES_OFF, LOGGING_ON, LOGGING_OFF, STORM_PORT, REWRITE_PORT, *CACHED_BARE_PORTS]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                shutil.rmtree(WORK, ignore_errors=True)
                sys.exit(f"port {port} is in use (another benchmark running?): not measuring")


def start(name, cmd, env=None, **kw):
    p = subprocess.Popen(cmd, stdout=open(f"{WORK}/{name}.out", "wb"), stderr=subprocess.STDOUT,
                         env=env, start_new_session=True, **kw)
    procs.append(p)
    started[name] = p.pid
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    procs.clear()


def rss_kib(pid):
    """RSS of a server and its non-worker children (nginx has a master + worker)."""
    total = 0
    pids = [pid] + [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    for p in pids:
        try:
            cmd = open(f"/proc/{p}/cmdline").read()
            if "hello_fcgi" in cmd or "php-cgi" in cmd:
                continue
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def setup_files():
    www = f"{WORK}/www"
    os.makedirs(www)
    with open(f"{www}/1k.txt", "wb") as f:
        f.write(b"x" * 1023 + b"\n")
    with open(f"{www}/1m.bin", "wb") as f:
        f.write(os.urandom(1 << 20))
    with open(f"{www}/100k.txt", "w") as f:  # compressible text, about 5:1 with gzip -1
        f.write("".join(f"<li>item {i}: the quick brown fox jumps over the lazy dog</li>\n" for i in range(1700)))
    # the same text with a precompressed sibling (the peers' tuned way: nginx's gzip_static, h2o's
    # file.send-compressed; h2pool sends a sibling by default)
    os.makedirs(f"{www}/pre")
    shutil.copy(f"{www}/100k.txt", f"{www}/pre/100k.txt")
    sh("gzip", "-k", "-9", f"{www}/pre/100k.txt")
    with open(f"{www}/hello.php", "w") as f:
        f.write('<?php echo "hello from php\\n";\n')
    os.makedirs(f"{www}/d")  # served by each peer's PHP as its users run it by default
    shutil.copy(f"{www}/hello.php", f"{www}/d/hello.php")
    if os.path.isdir("/usr/share/dokuwiki"):
        setup_dokuwiki(f"{www}/d/wiki", f"{WORK}/wiki")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
       "-keyout", f"{WORK}/key.pem", "-out", f"{WORK}/cert.pem")
    os.system(f"chmod -R a+rX {WORK}")


def bcrypt_hash(password, cost):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
            if crypt.METHOD_BLOWFISH in crypt.methods:
                return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** cost))
        except ImportError:
            pass
    return sh("htpasswd", "-nbB", "-C", str(cost), "u", password).stdout.strip().split(":", 1)[1]


def setup_storm_files():
    """A users file with one bcrypt cost-12 user (the cap), and a wrk script that sends a different
    wrong password with each request, so no two checks can share a computation."""
    with open(f"{WORK}/users.htpasswd", "w") as f:
        f.write(f"slow:{bcrypt_hash('right', 12)}\n")
    headers = ",\n".join('"Basic ' + base64.b64encode(f"slow:wrong-{i}".encode()).decode() + '"' for i in range(4096))
    with open(f"{WORK}/storm.lua", "w") as f:
        f.write(f"""local headers = {{{headers}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/1k.txt", {{["Authorization"] = headers[i % #headers + 1]}})
end
""")


def setup_dokuwiki(www, state):
    """A copy of Debian's DokuWiki at `www` (its configuration and pages under `state`): a real
    PHP application, 191 scripts on its start page."""
    os.makedirs(state, exist_ok=True)
    subprocess.run(["cp", "-rL", "/usr/share/dokuwiki", www], check=True)
    subprocess.run(["cp", "-rL", "/etc/dokuwiki", f"{state}/conf"], check=True)
    subprocess.run(["cp", "-r", "/var/lib/dokuwiki/data", f"{state}/data"], check=True)
    with open(f"{www}/inc/preload.php", "w") as f:
        f.write(f"<?php\nif (!defined('DOKU_CONF')) define('DOKU_CONF', '{state}/conf/');\n")
    with open(f"{state}/conf/local.php", "a") as f:
        f.write(f"$conf['savedir'] = '{state}/data';\n$conf['useacl'] = 0;\n")
    os.system(f"chmod -R a+rwX {state}")


def php_processes(root_pid, only_php=True):
    """The PHP processes under a process (h2pool's spawner's workers, php-fpm's children, ...),
    or every process under it."""
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        try:
            if not only_php or "php" in open(f"/proc/{pid}/cmdline").read():
                out.append(pid)
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def pss_kib(pids):
    """Proportional set size: pages the processes share (one opcache, a master's) counted once."""
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def new_conf_dir(name):
    """An empty conf.d under WORK for one of the bench's h2pools, and the pools' `user:` line
    (when the bench runs as root, its workers do too)."""
    conf = f"{WORK}/{name}"
    shutil.rmtree(conf, ignore_errors=True)
    os.makedirs(conf)
    return conf, "user: root" if os.geteuid() == 0 else ""


def write_h2pool_conf(args, min_processes):
    conf, user = new_conf_dir("h2pool.d")
    http, https = PORTS["h2pool"]
    with open(f"{conf}/bench.yaml", "w") as f:
        f.write(f"""
server:
  threads: {THREADS[0]}
pools:
  hello:
    command: [{os.path.abspath(args.hello)}]
    max_processes: {WORKERS}
    min_processes: {min_processes}
    {user}
  php:
    command: [php-cgi]
    max_processes: {WORKERS}
    min_processes: {min_processes}
    {user}
sites:
  bench:
    bindings: [http://127.0.0.1:{http}, https://127.0.0.1:{https}]
    tls: {{certificate: {WORK}/cert.pem, key: {WORK}/key.pem}}
    root: {WORK}/www
    handlers:
      - {{path: "/app", pool: hello}}
      - {{path: "/cached", pool: hello}}
      - {{path: "*.php", pool: php}}
    locations:
      /cached:
        modules:
          output_cache: [{{path: "/cached", duration: 60s}}]
  modules-on:
    bindings: [http://127.0.0.1:{MODULES_ON}]
    root: {WORK}/www
    modules:
      request_filtering:
        verbs: {{allow: [GET, HEAD, POST]}}
        file_extensions: {{deny: [.ini, .bak, .config]}}
        hidden_segments: [.git, bin, App_Data]
      ip_restriction: {{default: deny, allow: [127.0.0.0/8, "::1/128"]}}
      redirect: [{{from: /old/*, to: /new/$1, status: 301}}]
      authentication: {{anonymous: true}}
      authorization: [{{path: /admin/*, deny: {{users: ["?"]}}}}]
  modules-off:
    bindings: [http://127.0.0.1:{MODULES_OFF}]
    root: {WORK}/www
    modules:
      request_filtering: {{enabled: false}}
      ip_restriction: {{enabled: false}}
      redirect: {{enabled: false}}
      authentication: {{enabled: false}}
      authorization: {{enabled: false}}
      custom_headers: {{enabled: false}}
      custom_errors: {{enabled: false}}
  storm:
    bindings: [http://127.0.0.1:{STORM_PORT}]
    root: {WORK}/www
    modules:
      authentication:
        anonymous: false
        basic: {{users_file: {WORK}/users.htpasswd}}
""")
    return conf


def start_backends(args):
    """Each peer's backends: the same hello binary (4 processes on one socket, backlog 4096) and
    php-cgi (4 children).  One set per peer: a libfcgi or php-cgi child serves one connection at
    a time, so a peer's idle kept connections would starve the other peer's requests."""
    for peer in ("nginx", "h2o"):
        start(f"hello-{peer}", [os.path.abspath(args.hello), f"{WORK}/app-{peer}.sock", str(WORKERS)])
        env = dict(os.environ, PHP_FCGI_CHILDREN=str(WORKERS), PHP_FCGI_MAX_REQUESTS="0")
        start(f"php-{peer}", ["php-cgi", "-b", f"{WORK}/php-{peer}.sock"], env=env)
        deadline = time.monotonic() + 10
        while not (os.path.exists(f"{WORK}/app-{peer}.sock") and os.path.exists(f"{WORK}/php-{peer}.sock")):
            if time.monotonic() > deadline:
                raise RuntimeError("backends did not start")
            time.sleep(0.02)


def start_default_php_backends():
    """PHP as each peer's users run it by default, for the `-defaults` scenarios: nginx with
    Debian's php-fpm pool settings (www.conf: pm dynamic, max_children 5, start 2, spare 1-3,
    never recycled), h2o with php-cgi and 4 children as its documentation's fastcgi.spawn
    example starts it (PHP_FCGI_MAX_REQUESTS left at php-cgi's 500)."""
    fpm_bins = sorted(p for p in os.listdir("/usr/sbin") if p.startswith("php-fpm"))
    if not fpm_bins:
        raise RuntimeError("php-fpm is not installed (bench/run.sh installs it)")
    with open(f"{WORK}/fpm.conf", "w") as f:
        f.write(f"""[global]
pid = {WORK}/fpm.pid
error_log = {WORK}/fpm.log
daemonize = no
[www]
{"user = root" if os.geteuid() == 0 else ""}
listen = {WORK}/php-default-nginx.sock
listen.mode = 0666
pm = dynamic
pm.max_children = 5
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
""")
    fpm = [f"/usr/sbin/{fpm_bins[-1]}", "-F", "-y", f"{WORK}/fpm.conf"] + (["-R"] if os.geteuid() == 0 else [])
    start("php-fpm-nginx", fpm)
    env = dict(os.environ, PHP_FCGI_CHILDREN=str(WORKERS))
    env.pop("PHP_FCGI_MAX_REQUESTS", None)
    start("php-default-h2o", ["php-cgi", "-b", f"{WORK}/php-default-h2o.sock"], env=env)
    deadline = time.monotonic() + 10
    while not all(os.path.exists(f"{WORK}/php-default-{peer}.sock") for peer in ("nginx", "h2o")):
        if time.monotonic() > deadline:
            raise RuntimeError("php-fpm or php-cgi did not start")
        time.sleep(0.02)


def start_nginx():
    http, https = PORTS["nginx"]
    os.makedirs(f"{WORK}/nginx", exist_ok=True)
    with open(f"{WORK}/nginx.conf", "w") as f:
        f.write(f"""
user root;
worker_processes {THREADS[0]};
daemon off;
pid {WORK}/nginx/nginx.pid;
error_log {WORK}/nginx/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  include /etc/nginx/mime.types;
  gzip on; gzip_types text/plain; gzip_min_length 256; # level 1, as h2pool's on-the-fly gzip
  fastcgi_cache_path {WORK}/nginx/fcache levels=1:2 keys_zone=fcache:10m;
  # no backend keepalive: with one-connection-at-a-time children (libfcgi, php-cgi) nginx's idle
  # kept connections hold children while new connections wait in their backlog (p99 > 1 s)
  upstream app {{ server unix:{WORK}/app-nginx.sock; }}
  upstream php {{ server unix:{WORK}/php-nginx.sock; }}
  upstream php_default {{ server unix:{WORK}/php-default-nginx.sock; }}
  server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{https} ssl http2;
    ssl_certificate {WORK}/cert.pem; ssl_certificate_key {WORK}/key.pem;
    root {WORK}/www;
    location /pre/ {{ gzip_static on; }}
    location = /app {{ include /etc/nginx/fastcgi_params; fastcgi_pass app; }}
    location = /cached {{ include /etc/nginx/fastcgi_params; fastcgi_pass app; fastcgi_cache fcache;
                          fastcgi_cache_key $request_uri; fastcgi_cache_valid 200 60s; fastcgi_cache_lock on; }}
    # Debian's default site's PHP block as its users enable it (snippets/fastcgi-php.conf, whose
    # relative include would be looked up in this directory)
    location ~ ^/d/.*\\.php$ {{ fastcgi_split_path_info ^(.+?\\.php)(/.*)$; try_files $fastcgi_script_name =404;
                               set $path_info $fastcgi_path_info; fastcgi_param PATH_INFO $path_info;
                               fastcgi_index index.php; include /etc/nginx/fastcgi.conf; fastcgi_pass php_default; }}
    location ~ \\.php$ {{ include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
                          fastcgi_pass php; }}
  }}
}}
""")
    p = start("nginx", ["nginx", "-c", f"{WORK}/nginx.conf", "-p", f"{WORK}/nginx"])
    wait_port(http)
    return p


def start_h2o():
    http, https = PORTS["h2o"]
    with open(f"{WORK}/h2o.conf", "w") as f:
        f.write(f"""
num-threads: {THREADS[0]}
{"user: root" if os.geteuid() == 0 else ""}
error-log: {WORK}/h2o.err
listen: {{host: 127.0.0.1, port: {http}}}
listen:
  host: 127.0.0.1
  port: {https}
  ssl: {{certificate-file: {WORK}/cert.pem, key-file: {WORK}/key.pem}}
hosts:
  default:
    paths:
      /app:
        fastcgi.connect: {{port: {WORK}/app-h2o.sock, type: unix}}
      /cached:  # (h2o 2.2.5 has no FastCGI cache: its row is the uncached app)
        fastcgi.connect: {{port: {WORK}/app-h2o.sock, type: unix}}
      /d:
        file.dir: {WORK}/www/d
        file.index: [index.html, doku.php]
        file.custom-handler:
          extension: .php
          fastcgi.connect: {{port: {WORK}/php-default-h2o.sock, type: unix}}
      /pre:
        file.dir: {WORK}/www/pre
        file.send-compressed: ON
      /:
        file.dir: {WORK}/www
        compress: ON
        file.custom-handler:
          extension: .php
          fastcgi.connect: {{port: {WORK}/php-h2o.sock, type: unix}}
""")
    p = start("h2o", ["h2o", "-c", f"{WORK}/h2o.conf"])
    wait_port(http)
    return p


def start_h2pool(args, min_processes=WORKERS):
    conf = write_h2pool_conf(args, min_processes)
    p = start("h2pool", [os.path.abspath(args.h2pool), "-c", conf])
    wait_port(PORTS["h2pool"][0])
    return p


def parse_ms(text):
    m = re.match(r"([0-9.]+)(us|ms|s)", text)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def run_wrk(url, conns, duration, headers=()):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"] + [a for h in headers for a in ("-H", h)] + [url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": requests}


def run_h2load(url, duration):
    # (h2load asks for gzip by default: identity keeps this the static-file scenario it was)
    # h2load prints min/max/mean, no percentiles: they come from its per-request log
    log = f"{WORK}/h2load-requests.tsv"
    out = subprocess.run(["h2load", "-c16", "-m10", "-t1", f"-D{duration}", "-H", "accept-encoding: identity", f"--log-file={log}", url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", out).group(1))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    times = []
    with open(log) as f:  # start (us since the epoch), status, microseconds until the end of the response
        for line in f:
            fields = line.split()
            if len(fields) >= 3:
                times.append(int(fields[2]))
    os.unlink(log)
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))] / 1000 if times else 0.0
    return {"rps": rps, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": int(m.group(2)) + int(m.group(3)) if m else 0}


SCENARIOS = {
    "fastcgi-hello": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/app", 64, d),
    "php-hello": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/hello.php", 64, d),
    "php-hello-defaults": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/d/hello.php", 64, d),
    "dokuwiki-defaults": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/d/wiki/doku.php?id=start", 16, d),
    "static-1k": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/1k.txt", 64, d),
    "static-1m": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/1m.bin", 16, d),
    "h2-tls-static": lambda s, d: run_h2load(f"https://127.0.0.1:{PORTS[s][1]}/1k.txt", d),
    "overload-512": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/app", 512, d),
    "gzip-static-100k": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/100k.txt", 16, d, ["Accept-Encoding: gzip"]),
    "gzip-precompressed-100k": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/pre/100k.txt", 16, d,
                                                    ["Accept-Encoding: gzip"]),
    "fastcgi-cached": lambda s, d: run_wrk(f"http://127.0.0.1:{PORTS[s][0]}/cached", 64, d),
}


def modules_ratio(duration, rounds):
    """Static 1 KB with every request-phase module configured vs all disabled (h2pool only)."""
    on, off = [], []
    for _ in range(rounds):
        off.append(run_wrk(f"http://127.0.0.1:{MODULES_OFF}/1k.txt", 64, duration)["rps"])
        on.append(run_wrk(f"http://127.0.0.1:{MODULES_ON}/1k.txt", 64, duration)["rps"])
    return {"modules_on_rps": statistics.median(on), "modules_off_rps": statistics.median(off),
            "ratio": statistics.median(on) / statistics.median(off)}


def logging_ratio(args, duration, rounds):
    """Static 1 KB and FastCGI hello on a site with the W3C access log on vs a site with it off
    (h2pool only, one instance, the same pool; interleaved rounds, medians).  Besides requests/s,
    h2pool's CPU time per request (all its threads, the log writer's included): on a shared machine
    that moves much less than throughput does."""
    conf, user = new_conf_dir("h2pool-logging.d")
    with open(f"{conf}/bench.yaml", "w") as f:
        f.write(f"""
server:
  threads: 1
  log_dir: {WORK}/logs
pools:
  hello:
    command: [{os.path.abspath(args.hello)}]
    max_processes: {WORKERS}
    min_processes: {WORKERS}
    {user}
sites:
  log-on:
    bindings: [http://127.0.0.1:{LOGGING_ON}]
    root: {WORK}/www
    handlers: [{{path: "/app", pool: hello}}]
  log-off:
    bindings: [http://127.0.0.1:{LOGGING_OFF}]
    root: {WORK}/www
    handlers: [{{path: "/app", pool: hello}}]
    modules: {{logging: {{enabled: false}}}}
""")
    server = start("h2pool-logging", [os.path.abspath(args.h2pool), "-c", conf])
    wait_port(LOGGING_ON)
    paths = {"static-1k": "/1k.txt", "fastcgi-hello": "/app"}
    runs = {name: {"on": [], "off": [], "cpu_on": [], "cpu_off": []} for name in paths}

    def cpu_ticks():
        fields = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    try:
        for port in (LOGGING_OFF, LOGGING_ON):  # warm up
            for path in paths.values():
                run_wrk(f"http://127.0.0.1:{port}{path}", 64, 1)
        for r in range(rounds):
            for name, path in paths.items():
                for side, port in (("off", LOGGING_OFF), ("on", LOGGING_ON)):
                    before = cpu_ticks()
                    res = run_wrk(f"http://127.0.0.1:{port}{path}", 64, duration)
                    cpu_us = (cpu_ticks() - before) * 1e6 / os.sysconf("SC_CLK_TCK") / max(res["requests"], 1)
                    runs[name][side].append(res["rps"])
                    runs[name]["cpu_" + side].append(cpu_us)
                    print(f"round {r + 1} logging-{side:3} {name:14} {res['rps']:>10.0f} req/s {cpu_us:6.2f} us CPU/request "
                          f"errors {res['errors']}", file=sys.stderr)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        procs.remove(server)
    with open(f"{WORK}/h2pool-logging.out", errors="replace") as f:
        dropped = sum(1 for line in f if "dropped" in line)
    lines = 0
    for path in glob.glob(f"{WORK}/logs/log-on/*.log"):
        with open(path, "rb") as f:
            lines += sum(1 for line in f if not line.startswith(b"#"))
    result = {name: {"on_rps": statistics.median(v["on"]), "off_rps": statistics.median(v["off"]),
                     "ratio": statistics.median(v["on"]) / statistics.median(v["off"]),
                     "cpu_us_per_request_on": statistics.median(v["cpu_on"]),
                     "cpu_us_per_request_off": statistics.median(v["cpu_off"]),
                     "cpu_ratio": statistics.median(v["cpu_off"]) / statistics.median(v["cpu_on"])}
              for name, v in runs.items()}
    result["lines_written"] = lines
    result["drop_reports"] = dropped
    return result
def password_storm(duration, rounds):
    """Static 1 KB on one site (wrk -c64) alone, then while 16 connections send wrong passwords for a
    bcrypt cost-12 user to another site of the same h2pool (one event loop): the checks run on the
    crypt pool, so the static site should keep most of its throughput (h2pool only)."""
    static = f"http://127.0.0.1:{PORTS['h2pool'][0]}/1k.txt"
    alone, during, storms = [], [], []
    for _ in range(rounds):
        alone.append(run_wrk(static, 64, duration))
        storm = subprocess.Popen(["wrk", "-t1", f"-c{STORM_CONNECTIONS}", f"-d{duration + 2}s", "-s", f"{WORK}/storm.lua",
                                  f"http://127.0.0.1:{STORM_PORT}/1k.txt"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the pool's queue fills
        during.append(run_wrk(static, 64, duration))
        out = storm.communicate()[0]
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        storms.append({"checks_per_s": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),
                       "answered_401": int(m.group(1)) if m else 0,
                       "requests": int(re.search(r"(\d+) requests in", out).group(1))})
        print(f"password storm: static alone {alone[-1]['rps']:.0f} req/s p99 {alone[-1]['p99_ms']:.2f} ms, during "
              f"{during[-1]['rps']:.0f} req/s p99 {during[-1]['p99_ms']:.2f} ms, {storms[-1]['checks_per_s']:.1f} checks/s",
              file=sys.stderr)
    med = lambda runs, k: statistics.median(r[k] for r in runs)
    return {"static_alone_rps": med(alone, "rps"), "static_alone_p99_ms": med(alone, "p99_ms"),
            "static_during_rps": med(during, "rps"), "static_during_p99_ms": med(during, "p99_ms"),
            "static_during_errors": med(during, "errors"), "checks_per_s": med(storms, "checks_per_s"),
            "storm_requests": sum(s["requests"] for s in storms), "storm_401": sum(s["answered_401"] for s in storms),
            "ratio": med(during, "rps") / med(alone, "rps")}


def cold_start_ms(args, tries=5):
    """First request to a pool with no worker yet: spawn + answer, median of `tries` fresh servers."""
    samples = []
    for _ in range(tries):
        start_h2pool(args, min_processes=0)
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}",
                              f"http://127.0.0.1:{PORTS['h2pool'][0]}/app"], capture_output=True, text=True).stdout
        samples.append(float(out) * 1000)
        stop_all()
    return statistics.median(samples)


def rewrite_ratio(args, duration, rounds):
    """A front-controller request through 20 rewrite rules (19 that do not match, then the
    front controller's `unless: [file, directory]`) vs the same script requested directly
    (h2pool only, one instance, the same php-cgi pool; interleaved rounds, medians)."""
    conf, root = f"{WORK}/h2pool-rewrite.d", f"{WORK}/rewrite-www"
    for d in (conf, root):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with open(f"{root}/index.php", "w") as f:
        f.write('<?php echo "hello from ", $_SERVER["REQUEST_URI"], "\\n";\n')
    os.chmod(root, 0o755)
    user = "user: root" if os.geteuid() == 0 else ""
    rules = "".join(f'        - {{match: "^/section{i}/([a-z]+)$", to: "/index.php?s={i}&p=$1"}}\n' for i in range(19))
    with open(f"{conf}/bench.yaml", "w") as f:
        f.write(f"""
server:
  threads: 1
pools:
  php:
    command: [php-cgi]
    max_processes: {WORKERS}
    min_processes: {WORKERS}
    {user}
sites:
  s:
    bindings: [http://127.0.0.1:{REWRITE_PORT}]
    root: {root}
    handlers: [{{path: "*.php", pool: php}}]
    modules:
      rewrite:
{rules}        - {{match: ".", unless: [file, directory], to: /index.php}}
""")
    server = start("h2pool-rewrite", [os.path.abspath(args.h2pool), "-c", conf])
    wait_port(REWRITE_PORT)
    direct, rewritten = [], []
    try:
        for url in ("/index.php", "/blog/a-post"):  # warm up
            run_wrk(f"http://127.0.0.1:{REWRITE_PORT}{url}", 64, 1)
        for r in range(rounds):
            direct.append(run_wrk(f"http://127.0.0.1:{REWRITE_PORT}/index.php", 64, duration)["rps"])
            rewritten.append(run_wrk(f"http://127.0.0.1:{REWRITE_PORT}/blog/a-post", 64, duration)["rps"])
            print(f"round {r + 1} rewrite: direct {direct[-1]:.0f} req/s, through 20 rules {rewritten[-1]:.0f} req/s",
                  file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    return {"direct_rps": statistics.median(direct), "rewritten_rps": statistics.median(rewritten),
            "ratio": statistics.median(rewritten) / statistics.median(direct)}


def cached_vs_bare(args, duration, rounds):
    """h2pool's cached FastCGI response (a hit of the output cache, hello_fcgi's answer) vs a bare
    libh2o server (bench/bare_h2o.c, the same libh2o) answering a constant body of the same size,
    both with 2 threads (h2pool's default); interleaved rounds, medians."""
    h2pool_port, bare_port = CACHED_BARE_PORTS
    conf, user = new_conf_dir("h2pool-cached.d")
    with open(f"{conf}/bench.yaml", "w") as f:
        f.write(f"""
server:
  threads: 2
pools:
  hello:
    command: [{os.path.abspath(args.hello)}]
    max_processes: {WORKERS}
    min_processes: {WORKERS}
    {user}
sites:
  s:
    bindings: [http://127.0.0.1:{h2pool_port}]
    root: {WORK}/www
    handlers: [{{path: "/cached", pool: hello}}]
    modules:
      output_cache: [{{path: "/cached", duration: 600s}}]
""")
    h2pool = start("h2pool-cached", [os.path.abspath(args.h2pool), "-c", conf])
    wait_port(h2pool_port)
    results = {"h2pool": [], "bare": []}
    try:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{h2pool_port}/cached") as r:
            size = len(r.read())
        bare = start("bare-h2o", [os.path.abspath(args.bare), str(bare_port), "2", str(size)])
        wait_port(bare_port)
        urls = {"h2pool": f"http://127.0.0.1:{h2pool_port}/cached", "bare": f"http://127.0.0.1:{bare_port}/cached"}
        for url in urls.values():  # warm up
            run_wrk(url, 64, 1)
        for r in range(rounds):
            for name, url in urls.items():
                results[name].append(run_wrk(url, 64, duration))
                print(f"round {r + 1} cached-vs-bare {name:7} {results[name][-1]['rps']:>10.0f} req/s "
                      f"p99 {results[name][-1]['p99_ms']:.2f} ms errors {results[name][-1]['errors']}", file=sys.stderr)
        bare.terminate()
        bare.wait()
    finally:
        h2pool.terminate()
        h2pool.wait()
    row = {name: {k: statistics.median(x[k] for x in runs) for k in ("rps", "p99_ms", "errors")} for name, runs in results.items()}
    row["body_bytes"] = size
    row["ratio"] = row["h2pool"]["rps"] / row["bare"]["rps"]
    return row


def print_cached_vs_bare(v):
    print(f"cached FastCGI response ({v['body_bytes']} B, 2 threads) vs bare libh2o: {v['h2pool']['rps']:.0f} / "
          f"{v['bare']['rps']:.0f} req/s = {v['ratio']:.2f}x (p99 {v['h2pool']['p99_ms']:.2f} / {v['bare']['p99_ms']:.2f} ms)")


def print_logging(logging):
    for name in ("static-1k", "fastcgi-hello"):
        v = logging[name]
        print(f"{name}, W3C access log on vs off: {v['on_rps']:.0f} / {v['off_rps']:.0f} req/s = {v['ratio']:.2f}x; "
              f"CPU per request {v['cpu_us_per_request_on']:.2f} / {v['cpu_us_per_request_off']:.2f} us = "
              f"{v['cpu_ratio']:.2f}x")
    print(f"lines written: {logging['lines_written']}, drop reports in the error log: {logging['drop_reports']}")


def php_memory_kib(servers):
    """Memory of the PHP processes behind each server's PHP-as-users-run-it: h2pool's pool, the
    peers' default backends."""
    roots = {"h2pool": (servers["h2pool"].pid, "its php pool"), "nginx": (started["php-fpm-nginx"], "php-fpm, Debian's pool"),
             "h2o": (started["php-default-h2o"], "php-cgi, 4 children")}
    out = {}
    for srv, (pid, what) in roots.items():
        pids = php_processes(pid)
        out[srv] = {"pss_kib": pss_kib(pids), "processes": len(pids), "what": what}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h2pool", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--bare", default=os.path.join(os.path.dirname(ROOT), "build-release", "bare_h2o"),
                    help="bench/bare_h2o.c's binary (fastcgi-cached-vs-bare)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1,
                    help="front-end threads of each side (h2pool threads, nginx worker_processes, h2o num-threads); "
                         "1 by default, their own defaults (2 on this machine) with --threads 2")
    ap.add_argument("--only", default=",".join(list(SCENARIOS) + ["logging", "password-storm", "fastcgi-cached-vs-bare"]),
                    help="scenarios, comma-separated; `logging` = h2pool with the access log on vs off")
    args = ap.parse_args()
    THREADS[0] = args.threads
    check_ports_free()
    setup_files()
    setup_storm_files()
    scenarios = [s for s in args.only.split(",") if s and s != "password-storm"]
    storm_wanted = "password-storm" in args.only.split(",")
    if scenarios == ["rewrite"] and not storm_wanted:  # h2pool alone
        rewrite = rewrite_ratio(args, args.duration, args.rounds)
        print(f"front controller through 20 rewrite rules vs the script directly: {rewrite['rewritten_rps']:.0f} / "
              f"{rewrite['direct_rps']:.0f} req/s = {rewrite['ratio']:.2f}x")
        shutil.rmtree(WORK, ignore_errors=True)
        return
    cached_bare = None
    if "fastcgi-cached-vs-bare" in scenarios:  # h2pool and bare_h2o, no peers
        scenarios.remove("fastcgi-cached-vs-bare")
        cached_bare = True
        if not scenarios and not storm_wanted:
            print_cached_vs_bare(cached_vs_bare(args, args.duration, args.rounds))
            shutil.rmtree(WORK, ignore_errors=True)
            return
    if scenarios == ["logging"] and not storm_wanted:  # h2pool alone: no peers, no backends of theirs
        logging = logging_ratio(args, args.duration, args.rounds)
        print_logging(logging)
        shutil.rmtree(WORK, ignore_errors=True)
        return
    logging = None
    if "logging" in scenarios:
        scenarios.remove("logging")
        logging = True
    if "dokuwiki-defaults" in scenarios and not os.path.isdir("/usr/share/dokuwiki"):
        print("dokuwiki-defaults skipped: the dokuwiki package is not installed", file=sys.stderr)
        scenarios.remove("dokuwiki-defaults")
    results = {s: {srv: [] for srv in PORTS} for s in scenarios}
    rss = {srv: [] for srv in PORTS}
    try:
        start_backends(args)
        start_default_php_backends()
        servers = {"h2pool": start_h2pool(args), "nginx": start_nginx(), "h2o": start_h2o()}
        time.sleep(0.5)
        idle_rss = rss_kib(servers["h2pool"].pid)
        for srv in PORTS:  # warm up: spawn, caches, connections
            for s in scenarios:
                SCENARIOS[s](srv, 1)
        for r in range(args.rounds):
            for s in scenarios:
                for srv in PORTS:  # interleaved: h2pool, nginx, h2o, h2pool, ...
                    res = SCENARIOS[s](srv, args.duration)
                    res["rss_kib"] = rss_kib(servers[srv].pid)
                    results[s][srv].append(res)
                    print(f"round {r + 1} {s:14} {srv:7} {res['rps']:>10.0f} req/s p99 {res['p99_ms']:.2f} ms errors {res['errors']}",
                          file=sys.stderr)
        php_memory = php_memory_kib(servers)
        modules = modules_ratio(args.duration, args.rounds) if "static-1k" in scenarios else None
        storm = password_storm(args.duration, args.rounds) if storm_wanted else None
        stop_all()
        if logging:
            logging = logging_ratio(args, args.duration, args.rounds)
        if cached_bare:
            cached_bare = cached_vs_bare(args, args.duration, args.rounds)
        cold = cold_start_ms(args) if "fastcgi-hello" in scenarios else None
    finally:
        stop_all()

    table = {}
    for s in scenarios:
        row = {}
        for srv in PORTS:
            runs = results[s][srv]
            row[srv] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "errors", "rss_kib")}
        best_peer = max(row["nginx"]["rps"], row["h2o"]["rps"])
        row["ratio_to_best_peer"] = row["h2pool"]["rps"] / best_peer if best_peer else None
        table[s] = row
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": args.rounds, "duration_s": args.duration,
              "scenarios": table, "h2pool_idle_rss_kib": idle_rss, "h2pool_cold_start_ms": cold,
              "modules_on_vs_off": modules, "logging_on_vs_off": logging, "password_storm": storm,
              "fastcgi_cached_vs_bare_h2o": cached_bare, "php_processes_pss_kib": php_memory}
    print(f"\n{'scenario':16}{'server':8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'RSS KiB':>9}")
    for s, row in table.items():
        for srv in PORTS:
            v = row[srv]
            print(f"{s:16}{srv:8}{v['rps']:>10.0f}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v['errors']:>8.0f}{v['rss_kib']:>9.0f}")
        print(f"{'':16}h2pool / best peer: {row['ratio_to_best_peer']:.2f}x")
    print(f"\nh2pool idle RSS: {idle_rss / 1024:.1f} MiB; cold start of a C app: {cold:.1f} ms" if cold else "")
    print("PHP processes after the runs, PSS (shared pages counted once): " +
          ", ".join(f"{srv} {v['pss_kib'] / 1024:.1f} MiB in {v['processes']} ({v['what']})" for srv, v in php_memory.items()))
    if modules:
        print(f"static 1 KB, every request-phase module on vs all off: {modules['modules_on_rps']:.0f} / "
              f"{modules['modules_off_rps']:.0f} req/s = {modules['ratio']:.2f}x")
    if storm:
        print(f"static 1 KB during a storm of wrong bcrypt-12 passwords ({STORM_CONNECTIONS} connections) vs alone: "
              f"{storm['static_during_rps']:.0f} / {storm['static_alone_rps']:.0f} req/s = {storm['ratio']:.2f}x, "
              f"p99 {storm['static_during_p99_ms']:.2f} / {storm['static_alone_p99_ms']:.2f} ms; "
              f"{storm['checks_per_s']:.1f} checks/s, {storm['storm_401']} of {storm['storm_requests']} answered 401")
    if logging:
        print_logging(logging)
    if cached_bare:
        print_cached_vs_bare(cached_bare)
    os.makedirs(f"{ROOT}/results", exist_ok=True)
    with open(f"{ROOT}/results/latest.json", "w") as f:
        json.dump(report, f, indent=2)
    if not os.environ.get("KEEP"):
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
