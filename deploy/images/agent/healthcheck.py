#!/opt/jiexu/bin/python
"""The image's HEALTHCHECK (/usr/local/bin/jiexu-healthcheck): GET /readyz on the process's own
metrics port, JIEXU_RECONCILER_METRICS_PORT for the reconciler, else JIEXU_METRICS_PORT. Healthy
only when it answers 200. Without a port (metrics off) the process cannot be checked: unhealthy,
with the reason in `docker inspect`.

With JIEXU_METRICS_TLS_CERT the endpoint is HTTPS: the check connects to 127.0.0.1 in the same
container, so it does not verify the server's certificate; with JIEXU_METRICS_TLS_CLIENT_CA it
presents JIEXU_HEALTHCHECK_TLS_CERT/_KEY (else the server's own certificate and key, which the
client CA must then have issued for client authentication too)."""

import os
import ssl
import sys
import urllib.request

port = os.environ.get("JIEXU_RECONCILER_METRICS_PORT") or os.environ.get("JIEXU_METRICS_PORT")
if not port or port == "0":
    print("set JIEXU_METRICS_PORT (a fixed port) so that /readyz can be checked")
    sys.exit(1)
def tls_context() -> ssl.SSLContext | None:
    if not os.environ.get("JIEXU_METRICS_TLS_CERT"):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own process, over loopback
    if os.environ.get("JIEXU_METRICS_TLS_CLIENT_CA"):
        context.load_cert_chain(
            os.environ.get("JIEXU_HEALTHCHECK_TLS_CERT") or os.environ["JIEXU_METRICS_TLS_CERT"],
            os.environ.get("JIEXU_HEALTHCHECK_TLS_KEY") or os.environ.get("JIEXU_METRICS_TLS_KEY"),
        )
    return context


try:
    context = tls_context()
    url = f"{'https' if context else 'http'}://127.0.0.1:{int(port)}/readyz"
    with urllib.request.urlopen(url, timeout=4, context=context) as answer:  # noqa: S310 - http(s), above
        print(answer.status, answer.read(200).decode(errors="replace"))
        sys.exit(0 if answer.status == 200 else 1)
except Exception as exc:
    print(f"/readyz on port {port}: {exc}")
    sys.exit(1)
