#!/usr/bin/env python3
"""The PHP process layout, measured: h2pool in front of
  - independent: 4 php-cgi processes h2pool spawns, one socket each (`command: [php-cgi]`);
  - master: one php-cgi master with PHP_FCGI_CHILDREN=4 on one socket (a `connect:` pool of 4 slots);
  - fpm: php-fpm, pm static with 4 children, on one socket (a `connect:` pool of 4 slots);
each with 10000 requests per PHP process before it is replaced (h2pool's max_requests default).
PHP hello (wrk -c64) and DokuWiki's start page (wrk -c16), interleaved rounds, medians; then the
memory of each layout's PHP processes (PSS, so that what children share is counted once).

usage: python3 bench/php_layout.py --h2pool build-release/h2pool [--rounds 3] [--duration 4]
Needs php-cgi, php-fpm, dokuwiki (Debian packages) and wrk.
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

LAYOUTS = {"independent": 18280, "master": 18281, "fpm": 18282}
MAX_REQUESTS = 10000
WORKERS = 4
PAGES = {"php-hello": ("/hello.php", 64), "dokuwiki": ("/doku.php?id=start", 16)}


def setup_dokuwiki(work):
    bench.setup_dokuwiki(f"{work}/www", work)
    with open(f"{work}/www/hello.php", "w") as f:
        f.write('<?php echo "hello from php\\n";\n')
    os.system(f"chmod -R a+rX {work}")


def h2pool_conf(work, layout, port):
    conf = f"{work}/h2pool-{layout}.d"
    os.makedirs(conf)
    if layout == "independent":
        pool = f"command: [php-cgi]\n    max_processes: {WORKERS}\n    min_processes: {WORKERS}\n    user: root"
    else:
        pool = f"connect: [unix:{work}/{layout}.sock]\n    max_processes: {WORKERS}"
    with open(f"{conf}/bench.yaml", "w") as f:
        f.write(f"""
server:
  threads: 1
pools:
  php:
    {pool}
    max_requests: {MAX_REQUESTS}
sites:
  wiki:
    bindings: [http://127.0.0.1:{port}]
    root: {work}/www
    handlers: [{{path: "*.php", pool: php}}]
""")
    return conf


def start_backends(work):
    env = dict(os.environ, PHP_FCGI_CHILDREN=str(WORKERS), PHP_FCGI_MAX_REQUESTS=str(MAX_REQUESTS))
    master = bench.start("php-master", ["php-cgi", "-b", f"{work}/master.sock"], env=env)
    fpm_conf = f"{work}/fpm.conf"
    with open(fpm_conf, "w") as f:
        f.write(f"""[global]
pid = {work}/fpm.pid
error_log = {work}/fpm.log
daemonize = no
[www]
user = root
group = root
listen = {work}/fpm.sock
listen.backlog = 4096
listen.mode = 0666
pm = static
pm.max_children = {WORKERS}
pm.max_requests = {MAX_REQUESTS}
""")
    fpm_bin = sorted(p for p in os.listdir("/usr/sbin") if p.startswith("php-fpm"))[-1]
    fpm = bench.start("php-fpm", [f"/usr/sbin/{fpm_bin}", "-R", "-F", "-y", fpm_conf])
    deadline = time.monotonic() + 10
    while not (os.path.exists(f"{work}/master.sock") and os.path.exists(f"{work}/fpm.sock")):
        if time.monotonic() > deadline:
            raise RuntimeError("php-cgi master or php-fpm did not start")
        time.sleep(0.05)
    return {"master": master, "fpm": fpm}


def memory_kib(pids):
    pss = rss = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # with reaped children's
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h2pool", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    args = ap.parse_args()
    for port in LAYOUTS.values():  # (h2pool listens with SO_REUSEPORT: a second instance would share the port)
        with bench.socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sys.exit(f"port {port} is in use (another benchmark running?): not measuring")
    work = bench.WORK  # (made when bench is imported; removed at the end)
    results = {(page, layout): [] for page in PAGES for layout in LAYOUTS}
    try:
        setup_dokuwiki(work)
        backends = start_backends(work)
        servers = {}
        for layout, port in LAYOUTS.items():
            servers[layout] = bench.start(f"h2pool-{layout}", [os.path.abspath(args.h2pool), "-c", h2pool_conf(work, layout, port)])
            bench.wait_port(port)
        for layout, port in LAYOUTS.items():  # warm up: spawn, opcache, DokuWiki's caches
            for path, conns in PAGES.values():
                bench.run_wrk(f"http://127.0.0.1:{port}{path}", conns, 2)
        for r in range(args.rounds):
            for page, (path, conns) in PAGES.items():
                for layout, port in LAYOUTS.items():
                    php_root = servers[layout].pid if layout == "independent" else backends[layout].pid
                    # (the whole trees: a PHP process that exits during the run is in its parent's cutime)
                    pids = list(set(bench.php_processes(servers[layout].pid, only_php=False) + bench.php_processes(php_root, only_php=False)))
                    before = cpu_seconds(pids)
                    res = bench.run_wrk(f"http://127.0.0.1:{port}{path}", conns, args.duration)
                    pids += [p for p in bench.php_processes(servers[layout].pid, only_php=False) + bench.php_processes(php_root, only_php=False) if p not in pids]
                    res["cpu_us"] = (cpu_seconds(pids) - before) * 1e6 / max(res["requests"], 1)
                    results[(page, layout)].append(res)
                    print(f"round {r + 1} {page:10} {layout:12} {res['rps']:>8.0f} req/s p50 {res['p50_ms']:.2f} "
                          f"p99 {res['p99_ms']:.2f} errors {res['errors']} CPU {res['cpu_us']:.0f} us/request", file=sys.stderr, flush=True)
        memory = {"independent": memory_kib(bench.php_processes(servers["independent"].pid)),
                  "master": memory_kib(bench.php_processes(backends["master"].pid)),
                  "fpm": memory_kib(bench.php_processes(backends["fpm"].pid))}
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedians of {args.rounds} interleaved rounds of {args.duration} s (wrk -t1), h2pool with one thread in front:")
    for page in PAGES:
        best = max(statistics.median(x["rps"] for x in results[(page, layout)]) for layout in LAYOUTS)
        for layout in LAYOUTS:
            runs = results[(page, layout)]
            rps = statistics.median(x["rps"] for x in runs)
            print(f"{page:10} {layout:12} {rps:>8.0f} req/s ({rps / best:.2f}x the best) p50 "
                  f"{statistics.median(x['p50_ms'] for x in runs):.2f} ms p99 {statistics.median(x['p99_ms'] for x in runs):.2f} ms "
                  f"errors {sum(x['errors'] for x in runs)} CPU {statistics.median(x['cpu_us'] for x in runs):.0f} us/request  per round: " + " ".join(f"{x['rps']:.0f}" for x in runs))
    for layout, (pss, rss) in memory.items():
        print(f"{layout:12} PHP processes after the runs: PSS {pss / 1024:.1f} MiB, RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
