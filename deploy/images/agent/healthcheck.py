#!/opt/jiexu/bin/python
"""The image's HEALTHCHECK (/usr/local/bin/jiexu-healthcheck): GET /readyz on the process's own
metrics port, JIEXU_RECONCILER_METRICS_PORT for the reconciler, else JIEXU_METRICS_PORT. Healthy
only when it answers 200. Without a port (metrics off) the process cannot be checked: unhealthy,
with the reason in `docker inspect`."""

import os
import sys
import urllib.request

port = os.environ.get("JIEXU_RECONCILER_METRICS_PORT") or os.environ.get("JIEXU_METRICS_PORT")
if not port or port == "0":
    print("set JIEXU_METRICS_PORT (a fixed port) so that /readyz can be checked")
    sys.exit(1)
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{int(port)}/readyz", timeout=4) as answer:
        print(answer.status, answer.read(200).decode(errors="replace"))
        sys.exit(0 if answer.status == 200 else 1)
except Exception as exc:
    print(f"/readyz on port {port}: {exc}")
    sys.exit(1)
