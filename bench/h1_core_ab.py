#!/usr/bin/env python3
"""CPU per request of nginx, portcullis-pass and the `h1_core` prototype (alone and with
`--pipeline`), interleaved (bench/h1-core.md).

All three forward to one `bench_upstream`; `loadgen` drives each in turn (64 connections, open
loop) and the proxy's CPU time (utime + stime of its process tree, all threads, from
/proc/PID/stat) over the measured window is divided by the requests answered, as `bench/run`
does. Rounds are interleaved (A, B, C, A, B, C, ...) so that a slow spell of the shared machine
hits every row alike; the medians are printed as a table, the runs as JSON.

usage: bench/h1_core_ab.py --examples DIR --portcullis BIN [--repeats 5] [--rate 26000]
                           [--duration 5] [--warmup 1] [--port-base 18400] [--rows a,b,c]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def tree_pids(root):
    """The process and its descendants."""
    children = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root):
    total = 0
    for pid in tree_pids(root):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_port(port, proc, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start(argv, d, name, env=None):
    log = open(d / f"{name}.log", "w")
    return subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=d)


def nginx_conf(nd, port, up):
    """bench/run's `nginx` row: 2 workers, upstream keepalive 64, access log off."""
    return f"""
worker_processes 2;
daemon off;
pid {nd}/nginx.pid;
error_log {nd}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {nd}/body;
  proxy_temp_path {nd}/proxy;
  fastcgi_temp_path {nd}/fastcgi;
  uwsgi_temp_path {nd}/uwsgi;
  scgi_temp_path {nd}/scgi;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  upstream up {{
    server 127.0.0.1:{up};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def portcullis_conf(d, port, admin, up):
    """bench/run's `portcullis-pass` row."""
    return f"""version = 1
[listen]
addr = "127.0.0.1:{port}"
[admin]
addr = "127.0.0.1:{admin}"
[audit]
sink = "{d}/audit-pass.jsonl"
[[routes]]
name = "pass"
match = {{ path_prefix = "/" }}
[routes.upstream]
url = "http://127.0.0.1:{up}"
"""


def start_rows(a, d, up):
    rows, pb = {}, a.port_base
    if "nginx" in a.rows:
        nd = d / "nginx"
        nd.mkdir()
        (nd / "nginx.conf").write_text(nginx_conf(nd, pb + 5, up))
        p = start([shutil.which("nginx") or "/usr/sbin/nginx", "-c", nd / "nginx.conf", "-p", nd,
                   "-e", nd / "error.log"], d, "nginx")
        rows["nginx"] = (pb + 5, p)
    if "portcullis-pass" in a.rows:
        (d / "pass.toml").write_text(portcullis_conf(d, pb + 6, pb + 7, up))
        p = start([a.portcullis, "serve", "-c", d / "pass.toml"], d, "portcullis-pass",
                  env=dict(os.environ, RUST_LOG="warn"))
        rows["portcullis-pass"] = (pb + 6, p)
    if "h1-core" in a.rows:
        p = start([Path(a.examples) / "h1_core", "--addr", f"127.0.0.1:{pb + 8}", "--upstream",
                   f"127.0.0.1:{up}", "--threads", "2"], d, "h1-core")
        rows["h1-core"] = (pb + 8, p)
    if "h1-core-pipeline" in a.rows:
        p = start([Path(a.examples) / "h1_core", "--addr", f"127.0.0.1:{pb + 9}", "--upstream",
                   f"127.0.0.1:{up}", "--threads", "2", "--pipeline"], d, "h1-core-pipeline")
        rows["h1-core-pipeline"] = (pb + 9, p)
    for name, (port, p) in rows.items():
        if not wait_port(port, p):
            raise SystemExit(f"{name} did not start: {(d / f'{name}.log').read_text()[-500:]}")
    return rows


def one_run(a, port, proc):
    argv = [Path(a.examples) / "loadgen", "--url", f"http://127.0.0.1:{port}/", "-c", "64",
            "-t", "2", "-d", f"{a.duration}s", "--warmup", f"{a.warmup}s", "--rate", str(a.rate)]
    snap = {}
    timer = threading.Timer(a.warmup + 0.2, lambda: snap.update(
        t0=time.monotonic(), c0=cpu_seconds(proc.pid)))
    timer.start()
    out = subprocess.run([str(x) for x in argv], capture_output=True, text=True,
                         timeout=a.duration + a.warmup + 30)
    c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    timer.join()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["cpu_us"] = round((c1 - snap["c0"]) / (t1 - snap["t0"]) / res["rps"] * 1e6, 2)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", required=True)
    ap.add_argument("--portcullis", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rate", type=int, default=26000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--port-base", type=int, default=18400)
    ap.add_argument("--rows", default="nginx,portcullis-pass,h1-core,h1-core-pipeline")
    a = ap.parse_args()
    a.rows = a.rows.split(",")
    d = Path(tempfile.mkdtemp(prefix="h1core-ab-"))
    up_port = a.port_base
    upstream = start([Path(a.examples) / "bench_upstream", "--addr", f"127.0.0.1:{up_port}",
                      "--threads", "1"], d, "upstream")
    procs = [upstream]
    try:
        if not wait_port(up_port, upstream):
            raise SystemExit("upstream did not start")
        rows = start_rows(a, d, up_port)
        procs += [p for _, p in rows.values()]
        runs = {name: [] for name in rows}
        for rep in range(a.repeats):
            for name, (port, p) in rows.items():
                r = one_run(a, port, p)
                runs[name].append(r)
                print(f"round {rep + 1} {name}: cpu_us {r['cpu_us']} rps {r['rps']:.0f} "
                      f"p99_ms {r['p99_ms']} errors {r['errors']} bad {r['bad_status']}",
                      file=sys.stderr, flush=True)
        print(json.dumps(runs))
        base = statistics.median(r["cpu_us"] for r in runs.get("nginx", [{"cpu_us": 0}]))
        print("| row | CPU µs/req (median) | runs | × nginx | p99 ms (median) |", file=sys.stderr)
        print("|---|---|---|---|---|", file=sys.stderr)
        for name, rs in runs.items():
            cpu = statistics.median(r["cpu_us"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            ratio = f"{cpu / base:.2f}" if base else "-"
            print(f"| {name} | {cpu:.1f} | {', '.join(str(r['cpu_us']) for r in rs)} | {ratio} "
                  f"| {p99} |", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
