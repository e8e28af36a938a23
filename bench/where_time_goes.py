#!/usr/bin/env python3
"""Where the time goes, per request, in counts that a shared machine does not blur much:
syscalls, context switches and CPU time of the front end (and CPU time of its backends) for a
fixed number of requests, h2pool vs nginx vs h2o on the same backends as bench.py; then a
profile of h2pool's front end (perf record) and latency histograms (wrk --latency).

usage: python3 bench/where_time_goes.py --h2pool build-release/h2pool --hello build-release/tests/hello_fcgi
           [--requests 40000] [--rounds 3] [--duration 4] [--profile-seconds 4]
           [--only counts,strace,latency,profile] [--scenarios fastcgi-hello,php-hello,static-1k]
(static-1k has no backend: its BE column is 0)
Needs perf (Debian: linux-perf), h2load and wrk, and root for perf's syscall tracepoints.
"""
import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PATHS = {"fastcgi-hello": "/app", "php-hello": "/hello.php", "static-1k": "/1k.txt"}
BACKEND_NAMES = {"fastcgi-hello": "hello_fcgi", "php-hello": "php-cgi"}


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def descendants(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            todo += children(p)
        except OSError:
            pass
    return seen


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""


def front_end_pids(srv, proc):
    if srv == "nginx":  # the worker, not the master
        return [p for p in children(proc.pid) if "nginx" in cmdline(p)]
    return [proc.pid]


def backend_pids(srv, proc, scenario, backends):
    """The backend processes, and their parents (a worker that exits during the run is counted in
    its parent's cutime: h2pool's spawner, php-cgi's master).  None for a static file."""
    if scenario not in BACKEND_NAMES:
        return []
    name = BACKEND_NAMES[scenario]
    if srv == "h2pool":
        workers = [p for p in descendants(proc.pid) if name in cmdline(p)]
        parents = {int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) for p in workers if os.path.exists(f"/proc/{p}")}
        return sorted(set(workers) | (parents - {proc.pid}))  # (not the front end: its CPU is counted apart)
    return descendants(backends[f"{'php' if scenario == 'php-hello' else 'hello'}-{srv}"].pid)


def cpu_by_pid(pids):
    cpu = {}
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            cpu[p] = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
        except OSError:
            pass
    return cpu


def cpu_used(before, after):
    """CPU seconds between two samples of a set of processes that holds the parents of any that
    exit: a process started in between counts whole, and one that exited in between is in its
    parent's cutime (its time before the first sample, counted there too, is taken off)."""
    return sum(after.values()) - sum(before.values())


def machine_busy():
    """Seconds of CPU the whole machine spent busy (every process, the kernel's softirqs too)."""
    f = open("/proc/stat").readline().split()[1:]
    ticks = [int(x) for x in f]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def switches(pids):
    vol = invol = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                for line in open(f"/proc/{p}/task/{task}/status"):
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
            except OSError:
                pass
    return vol, invol


def count_run(srv, proc, scenario, backends, requests):
    """Fixed-count run (h2load over HTTP/1.1, 64 connections): per-request counts."""
    url = f"http://127.0.0.1:{bench.PORTS[srv][0]}{PATHS[scenario]}"
    fe, be = front_end_pids(srv, proc), backend_pids(srv, proc, scenario, backends)
    out_file = f"{bench.WORK}/perf-stat.txt"
    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out_file, "-e", "raw_syscalls:sys_enter,context-switches",
                             "-p", ",".join(map(str, fe))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    sw0, cpu0, bcpu0 = switches(fe), cpu_by_pid(fe), cpu_by_pid(be)
    lg0, all0 = children_cpu(), machine_busy()
    out = subprocess.run(["h2load", "--h1", "-n", str(requests), "-c64", "-t1", url], capture_output=True, text=True).stdout
    lg1, all1 = children_cpu(), machine_busy()
    be_after = backend_pids(srv, proc, scenario, backends)
    new = [p for p in be_after if p not in be]  # (a worker recycled during the run: all its time is counted)
    sw1, cpu1, bcpu1 = switches(fe), cpu_by_pid(fe), cpu_by_pid(be_after)
    if front_end_pids(srv, proc) != fe or new:
        print(f"note: {srv} {scenario}: processes changed during the run (front end {fe} -> {front_end_pids(srv, proc)}, "
              f"{len(new)} new backend processes)", file=sys.stderr)
    perf.send_signal(signal.SIGINT)
    perf.wait()
    counts = {}
    for line in open(out_file):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2]] = int(f[0])
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    done = int(m.group(1)) if m else 0
    rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", out).group(1))
    n = max(done, 1)
    return {"rps": rps, "ok": done, "syscalls": counts.get("raw_syscalls:sys_enter", 0) / n,
            "cs_perf": counts.get("context-switches", 0) / n, "vol": (sw1[0] - sw0[0]) / n, "invol": (sw1[1] - sw0[1]) / n,
            "fe_cpu_us": cpu_used(cpu0, cpu1) * 1e6 / n, "be_cpu_us": cpu_used(bcpu0, bcpu1) * 1e6 / n,
            "lg_cpu_us": (lg1 - lg0) * 1e6 / n, "all_cpu_us": (all1 - all0) * 1e6 / n}


def strace_run(srv, proc, scenario, requests):
    """Which syscalls, per request (strace -c -f slows the server: counts only, no timing)."""
    url = f"http://127.0.0.1:{bench.PORTS[srv][0]}{PATHS[scenario]}"
    out_file = f"{bench.WORK}/strace-{srv}-{scenario}.txt"
    fe = front_end_pids(srv, proc)
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out_file] + [a for p in fe for a in ("-p", str(p))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    subprocess.run(["h2load", "--h1", "-n", str(requests), "-c64", "-t1", url], capture_output=True)
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    calls = {}
    for line in open(out_file):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            calls[f[-1]] = int(f[3])
    return {k: v / requests for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / requests >= 0.01}


def latency_run(srv, scenario, duration):
    url = f"http://127.0.0.1:{bench.PORTS[srv][0]}{PATHS[scenario]}"
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", "--latency", url], capture_output=True, text=True).stdout
    pct = {k: bench.parse_ms(v) for k, v in re.findall(r"\s(50|75|90|99)%\s+(\S+)", out)}
    pct["max"] = bench.parse_ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1))
    pct["rps"] = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    return pct


def profile(proc, scenario, seconds, top):
    url = f"http://127.0.0.1:{bench.PORTS['h2pool'][0]}{PATHS[scenario]}"
    data = f"{bench.WORK}/perf-{scenario}.data"
    load = subprocess.Popen(["wrk", "-t1", "-c64", f"-d{seconds + 2}s", url], stdout=subprocess.DEVNULL)
    time.sleep(1)
    subprocess.run(["perf", "record", "-q", "-F", "1999", "-g", "-o", data, "-p", str(proc.pid), "--", "sleep", str(seconds)],
                   capture_output=True)
    load.wait()
    by_dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio", "-g", "none"],
                            capture_output=True, text=True).stdout
    by_sym = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
                            capture_output=True, text=True).stdout
    lines = lambda text, n: [line for line in text.splitlines() if line.strip() and not line.startswith("#")][:n]
    return lines(by_dso, 8), lines(by_sym, top)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h2pool", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--profile-seconds", type=int, default=4)
    ap.add_argument("--only", default="counts,latency,profile")
    ap.add_argument("--scenarios", default="fastcgi-hello,php-hello")
    args = ap.parse_args()
    what = args.only.split(",")
    scenarios = args.scenarios.split(",")
    bench.check_ports_free()
    bench.setup_files()
    bench.setup_storm_files()  # (the h2pool config names its users file)
    try:
        bench.start_backends(args)
        backends = {name: p for name, p in zip(["hello-nginx", "php-nginx", "hello-h2o", "php-h2o"], bench.procs)}
        servers = {"h2pool": bench.start_h2pool(args), "nginx": bench.start_nginx(), "h2o": bench.start_h2o()}
        for srv in servers:  # warm up
            for s in scenarios:
                latency_run(srv, s, 1)
        if "counts" in what:
            results = {(s, srv): [] for s in scenarios for srv in servers}
            for r in range(args.rounds):
                for s in scenarios:
                    for srv, proc in servers.items():
                        res = count_run(srv, proc, s, backends, args.requests)
                        results[(s, srv)].append(res)
                        print(f"round {r + 1} {s:14} {srv:7} " + " ".join(f"{k} {v:.2f}" for k, v in res.items()), file=sys.stderr)
            print(f"\nper request, medians of {args.rounds} interleaved rounds of {args.requests} requests (h2load --h1 -c64):")
            print(f"{'scenario':15}{'server':8}{'req/s':>9}{'syscalls':>10}{'cs(perf)':>10}{'vol':>7}{'invol':>7}"
                  f"{'FE CPU us':>11}{'BE CPU us':>11}{'LG CPU us':>11}{'all CPU us':>11}")
            for (s, srv), runs in results.items():
                med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
                print(f"{s:15}{srv:8}{med['rps']:>9.0f}{med['syscalls']:>10.2f}{med['cs_perf']:>10.2f}{med['vol']:>7.2f}"
                      f"{med['invol']:>7.2f}{med['fe_cpu_us']:>11.2f}{med['be_cpu_us']:>11.2f}{med['lg_cpu_us']:>11.2f}"
                      f"{med['all_cpu_us']:>11.2f}")
            print("(LG: the load generator, h2load; all: the whole machine busy, every process and the kernel)")
        if "strace" in what:
            for s in scenarios:
                for srv, proc in servers.items():
                    calls = strace_run(srv, proc, s, args.requests // 4)
                    print(f"syscalls per request, {s} {srv} (strace -c): total {sum(calls.values()):.2f}: " +
                          ", ".join(f"{k} {v:.2f}" for k, v in calls.items()))
        if "latency" in what:
            lat = {(s, srv): [] for s in scenarios for srv in servers}
            for r in range(args.rounds):
                for s in scenarios:
                    for srv in servers:
                        res = latency_run(srv, s, args.duration)
                        lat[(s, srv)].append(res)
                        print(f"round {r + 1} {s:14} {srv:7} " + " ".join(f"{k} {v:.2f}" for k, v in res.items()), file=sys.stderr)
            print(f"\nlatency (wrk -c64 --latency, medians of {args.rounds} interleaved rounds of {args.duration} s), ms:")
            for s in scenarios:
                for srv in servers:
                    runs = lat[(s, srv)]
                    med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
                    p99s = " ".join(f"{x['99']:.1f}" for x in runs)
                    print(f"{s:15}{srv:8}{med['rps']:>9.0f} req/s  p50 {med['50']:.2f} p75 {med['75']:.2f} p90 {med['90']:.2f} "
                          f"p99 {med['99']:.2f} max {med['max']:.1f}  (p99 per round: {p99s})")
                best = min(statistics.median(x["99"] for x in lat[(s, p)]) for p in servers if p != "h2pool")
                print(f"{'':15}h2pool p99 / best peer's p99: {statistics.median(x['99'] for x in lat[(s, 'h2pool')]) / best:.2f}")
        if "profile" in what:
            for s in scenarios:
                dsos, syms = profile(servers["h2pool"], s, args.profile_seconds, 30)
                print(f"\nh2pool front end, {s}: CPU samples by object\n" + "\n".join(dsos))
                print("top symbols\n" + "\n".join(syms))
    finally:
        bench.stop_all()
        if not os.environ.get("KEEP"):
            import shutil
            shutil.rmtree(bench.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
