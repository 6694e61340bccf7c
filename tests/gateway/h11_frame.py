"""Frames byte streams with h11, an HTTP/1 parser independent of hyper and httparse.

Reads a JSON list of hex-encoded byte streams on stdin (each: what a client writes on one
connection). For each prints how h11, acting as the server, frames it:

  {"requests": [[method, target, body_length, closes_after], ...],
   "end": "ok" | "incomplete" | "error", "error": "..."}

- every complete request (head and whole body) in order; `closes_after` is true when h11 would
  close the connection after answering it (HTTP/1.0, `Connection: close`);
- "ok": all bytes were framed; "incomplete": the stream stops inside a message (h11 waits for
  more; "pending": [method, target] when it stops inside that request's body); "error": h11
  refuses the bytes (RemoteProtocolError).

h11 answers every request with an empty 404 (never 2xx, so CONNECT and Upgrade never switch
protocols). The bytes after each request are framed as by a new connection, even where h11
would close this one: a server that keeps such a connection open (hyper does for HTTP/1.0
keep-alive) reads them as the next request, and the comparison must know how they frame.
"""

import json
import sys

try:
    import h11
except ImportError as e:
    sys.exit("the differential framing test needs Python h11 (%s): scripts/test installs it "
             "into its venv, target/test-venv" % e)


def frame(data):
    requests = []
    while True:
        # RFC 9112 section 2.2 lets a server ignore empty lines before a request-line (hyper does);
        # h11 refuses them, so they are dropped here rather than counted as a disagreement.
        data = data.lstrip(b"\r\n")
        if not data:
            return {"requests": requests, "end": "ok"}
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        head = None
        body = 0
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as e:
                return {"requests": requests, "end": "error", "error": str(e)}
            if ev is h11.NEED_DATA:
                out = {"requests": requests, "end": "incomplete"}
                if head is not None:
                    out["pending"] = [head[0], head[1]]
                return out
            if isinstance(ev, h11.Request):
                head = (ev.method.decode("latin-1"), ev.target.decode("latin-1"))
            elif isinstance(ev, h11.Data):
                body += len(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                conn.send(h11.Response(status_code=404, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                closes = conn.our_state is h11.MUST_CLOSE
                requests.append([head[0], head[1], body, closes])
                # Each request is framed by a fresh connection over the bytes left, whether or
                # not h11 would keep this one open.
                data = conn.trailing_data[0]
                break


def main():
    out = [frame(bytes.fromhex(h)) for h in json.load(sys.stdin)]
    json.dump(out, sys.stdout)


main()
