"""Run a test bed service with TCP_NODELAY on every connection it accepts, as Go's net/http (the
real docker-registry, Rekor, Fulcio) does by default:

    python -m bench.nodelay testbed.registry --listen 127.0.0.1:0 ...

http.server writes a response's headers and its body in two sends; with Nagle's algorithm on, the
body waits for the client's delayed ACK of the headers (~40 ms on Linux), a stall per response
with a body that no real registry or Rekor has and that a benchmark would measure instead of the
client. Both the test bed's registry and its sigstore services are ThreadingHTTPServers, so
StreamRequestHandler's own switch turns it off for all of them."""

from __future__ import annotations

import runpy
import socketserver
import sys

if __name__ == "__main__":
    socketserver.StreamRequestHandler.disable_nagle_algorithm = True
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
