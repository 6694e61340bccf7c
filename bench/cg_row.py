#!/usr/bin/env python3
"""Instructions per request (callgrind, user space) of one `bench/run` portcullis row.

usage: bench/cg_row.py KIND [REQUESTS]     e.g. bench/cg_row.py ldap

KIND is any portcullis configuration `bench/run` measures (pass, full, ldap, jwt, mtls, decide,
...), built with the same config, fixtures, upstream and slapd as `bench/run`. The gateway runs
under `valgrind --tool=callgrind`; after a 4 s warm-up at 200 req/s (not counted) it takes
REQUESTS (default 2500) at 250 req/s over 8 connections. Callgrind counts are deterministic to
~1%, so one run compares two builds even on a busy machine (CPU time does not).

With CG_NEW_CONNECTION=1 every request comes on a new plain connection (loadgen
--new-connection, as `bench/run`'s new-connection table): the figure is then instructions per
connection, accept and close included.

Environment: PORTCULLIS_BIN (default target-release/release/portcullis under CARGO_TARGET_DIR or
the repository), EXAMPLES_DIR (bench_upstream and loadgen; default next to the binary).

Prints `KIND: requests N instructions T per-request X (per request|connection)` and the work
directory, whose `callgrind.out.1` opens with `callgrind_annotate --inclusive=yes`.

Blind spot: valgrind does not report SHA-NI, so the `sha2` crate takes its software path under
it (about 3,500 instructions a 64-byte block); the API key lookup and the LDAP bind cache look
several thousand instructions dearer here than they are on hardware with SHA-NI.
"""
import importlib.machinery
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def bench_module():
    loader = importlib.machinery.SourceFileLoader("benchrun", str(HERE / "run"))
    spec = importlib.util.spec_from_loader("benchrun", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    kind = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 2500
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target-release"))
    real = Path(os.environ.get("PORTCULLIS_BIN", target / "release/portcullis"))
    examples = Path(os.environ.get("EXAMPLES_DIR", real.parent / "examples"))
    for p in (real, examples / "bench_upstream", examples / "loadgen"):
        if not p.exists():
            print(f"cg_row: {p} is missing (build with `cargo build --release --examples`)",
                  file=sys.stderr)
            return 1
    new_connection = bool(os.environ.get("CG_NEW_CONNECTION"))
    b = bench_module()
    d = Path(tempfile.mkdtemp(prefix="cg-row-"))
    d.chmod(0o755)
    # `bench/run` starts the binary it is given for `check` and for `serve`; only `serve` runs
    # under callgrind.
    wrap = d / "portcullis-under-callgrind"
    wrap.write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = serve ]; then exec valgrind --tool=callgrind '
        f'--callgrind-out-file={d}/callgrind.out "{real}" "$@"; fi\n'
        f'exec "{real}" "$@"\n')
    wrap.chmod(0o755)
    bins = {"upstream": examples / "bench_upstream", "loadgen": examples / "loadgen",
            "portcullis": wrap}
    procs = b.Procs()
    try:
        b.make_certs(d)
        api_key = b.portcullis_fixtures(d, bins)
        upp = b.free_port()
        up = procs.start("upstream", [bins["upstream"], "--addr", f"127.0.0.1:{upp}",
                                      "--threads", "1"], d)
        if not b.wait_port(upp, up):
            raise RuntimeError("bench_upstream did not start")
        ldap = b.start_slapd(d, procs) if kind.startswith("ldap") else None
        try:
            cfg = b.start_portcullis(kind, d, procs, bins, upp, ldap, api_key)
        except ValueError:
            print(f"cg_row: {kind} is not one of bench/run's portcullis configurations",
                  file=sys.stderr)
            return 2
        pid = cfg["proc"].pid

        def load(rate, seconds):
            argv = [str(bins["loadgen"]), "--url", cfg["url"], "-c", "8",
                    "-d", f"{seconds}s", "--warmup", "0s"]
            # --new-connection is a closed loop: as fast as the gateway under callgrind answers.
            argv += ["--new-connection"] if new_connection else ["--rate", str(rate)]
            for h in cfg["headers"]:
                argv += ["-H", h]
            argv += cfg.get("tls", [])
            run = subprocess.run(argv, capture_output=True, text=True, check=True)
            return json.loads(run.stdout)

        load(200, 4)
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
        res = load(250, max(1, requests // 250))
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
        time.sleep(1)
        if res.get("errors") or res.get("bad_status"):
            raise RuntimeError(f"the load was not answered cleanly: {res}")
        out = d / "callgrind.out.1"
        annotated = subprocess.run(["callgrind_annotate", str(out)], capture_output=True,
                                   text=True, check=True).stdout
        total = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", annotated, re.M)
        if total is None:
            raise RuntimeError(f"no PROGRAM TOTALS in {out}")
        instructions = int(total.group(1).replace(",", ""))
        n = res["requests"]
        unit = "connection" if new_connection else "request"
        print(f"{kind}: requests {n} instructions {instructions} per-request "
              f"{instructions // n} (per {unit})   (work directory {d})")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
