#!/bin/bash
# Instructions per request (callgrind, user space) of one proxy row of bench/h1-core.md: the same
# bench_upstream and loadgen as bench/h1_core_ab.py, 2500 requests at 250/s over 8 connections
# after a 3 s warm-up that is not counted. Callgrind counts are deterministic to ~1%, so one run
# per row compares rows even on a busy machine (CPU time does not).
#
# usage: bench/h1_core_cg.sh proto|proto-pipeline|pass|nginx EXAMPLES_DIR [PORTCULLIS_BIN] [N]
#   proto: EXAMPLES_DIR/h1_core --threads 2 (proto-pipeline: with --pipeline); pass: portcullis serve, bench/run's portcullis-pass
#   config; nginx: bench/run's nginx row in one process (master_process off, 1 worker).
# env PORTBASE (default 18400): upstream PORTBASE, proxy PORTBASE+1, admin PORTBASE+2.
# Prints `KIND: requests N instructions T per-request X` and leaves callgrind.out.1 in the work
# directory it names, for `callgrind_annotate --inclusive=yes`.
set -eu
KIND=$1; T=$2; BIN=${3:-}; N=${4:-2500}
PB=${PORTBASE:-18400}; UPP=$PB; PORT=$((PB+1)); ADM=$((PB+2))
D=$(mktemp -d /tmp/h1core-cg.XXXXXX)
echo "work directory $D" >&2
case $KIND in
proto) CMD=("$T/h1_core" --addr "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPP" --threads 2) ;;
proto-pipeline)
  CMD=("$T/h1_core" --addr "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPP" --threads 2 --pipeline) ;;
pass)
  cat > "$D/gw.toml" <<EOT
version = 1
[listen]
addr = "127.0.0.1:$PORT"
[admin]
addr = "127.0.0.1:$ADM"
[audit]
sink = "$D/audit.jsonl"
[[routes]]
name = "pass"
match = { path_prefix = "/" }
[routes.upstream]
url = "http://127.0.0.1:$UPP"
EOT
  CMD=("$BIN" serve -c "$D/gw.toml") ;;
nginx)
  cat > "$D/nginx.conf" <<EOT
worker_processes 1;
master_process off;
daemon off;
pid $D/nginx.pid;
error_log $D/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $D/body;
  proxy_temp_path $D/proxy;
  fastcgi_temp_path $D/fastcgi;
  uwsgi_temp_path $D/uwsgi;
  scgi_temp_path $D/scgi;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UPP; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOT
  CMD=("$(command -v nginx || echo /usr/sbin/nginx)" -c "$D/nginx.conf" -p "$D" -e "$D/error.log") ;;
*) echo "unknown kind $KIND" >&2; exit 2 ;;
esac
"$T/bench_upstream" --addr "127.0.0.1:$UPP" --threads 1 > "$D/up.log" 2>&1 &
UP=$!
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/callgrind.out" "${CMD[@]}" > "$D/proxy.log" 2>&1 &
GW=$!
trap 'kill $GW $UP 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -s -o /dev/null "localhost:$PORT/" && break; sleep 0.2; done
code=$(curl -s -o /dev/null -w "%{http_code}" "localhost:$PORT/")
[ "$code" = 200 ] || { echo "smoke request answered $code" >&2; tail "$D/proxy.log" >&2; exit 1; }
"$T/loadgen" --url "http://127.0.0.1:$PORT/" -c 8 --rate 200 -d 3s --warmup 0s > /dev/null
callgrind_control -z $GW > /dev/null
"$T/loadgen" --url "http://127.0.0.1:$PORT/" -c 8 --rate 250 -d $((N / 250))s --warmup 0s > "$D/lg.json"
callgrind_control -d $GW > /dev/null
sleep 1
kill $GW $UP; wait $GW 2>/dev/null || true
REQ=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['requests'])" "$D/lg.json")
TOT=$(callgrind_annotate "$D/callgrind.out.1" 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1);print $1}')
echo "$KIND: requests $REQ instructions $TOT per-request $((TOT / REQ))"
