"""TLS from the URL to every process: ``amqps://`` with CA, client certificate and host name check.

An AMQP URL carries its TLS settings in the query string, as aiormq reads them::

    amqps://USER:PASS@broker.example:5671/VHOST?cafile=/etc/jiexu/ca.pem&certfile=/etc/jiexu/client.pem&keyfile=/etc/jiexu/client.key

aiormq builds the context with `ssl.create_default_context` (the CA of ``cafile``, else the
system's; the host name checked against the certificate) and presents ``certfile``/``keyfile``
when given. `login_url` keeps scheme, hosts, ports and that query when it swaps in an agency's
login, so what ``jiexu topology apply`` writes into ``CODE.broker.json`` still says TLS.

``JIEXU_REQUIRE_TLS=true`` makes plaintext a configuration error: `check_amqp_url` refuses an
``amqp://`` URL (and ``no_verify_ssl``), `check_http_url` an ``http://`` management URL. Off by
default so that tests and the demo on a loopback broker keep working; every deployment sets it.

The management API: ``JIEXU_MANAGEMENT_URL`` (``https://...``; when unset and the AMQP URL is
``amqps://``, ``https://HOST:15671``), its CA ``JIEXU_MANAGEMENT_CAFILE`` (else the AMQP URL's
``cafile``, else the system's), and a client certificate when the broker requires one
(``JIEXU_MANAGEMENT_CERTFILE``/``JIEXU_MANAGEMENT_KEYFILE``, else the AMQP URL's).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

__all__ = [
    "AMQPS_PORT",
    "AMQP_PORT",
    "PlaintextRefused",
    "check_amqp_url",
    "check_http_url",
    "login_url",
    "management_tls",
    "require_tls",
    "url_tls_files",
]

AMQP_PORT = 5672
AMQPS_PORT = 5671
_TRUE = {"1", "true", "yes", "on"}


class PlaintextRefused(ValueError):
    """A plaintext (or unverified) URL where ``JIEXU_REQUIRE_TLS`` asks for TLS; one line."""


def require_tls(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``JIEXU_REQUIRE_TLS`` is on (true/1/yes/on)."""
    env = os.environ if env is None else env
    return env.get("JIEXU_REQUIRE_TLS", "").strip().lower() in _TRUE


def _split(url: str) -> tuple[str, str, str, str, str]:
    """scheme, userinfo ('' if none), netloc hosts (as written), path, query; tolerates the
    comma-separated host lists of a cluster URL, which urllib would not parse as one port."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a URL (no scheme://)")
    rest, _, _fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme.lower(), userinfo if at else "", hosts, slash + path, query


def _redacted(url: str) -> str:
    try:
        scheme, userinfo, hosts, path, _query = _split(url)
    except ValueError:
        return "<not a URL>"
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + ':******@' if userinfo else ''}{hosts}{path}"


def check_amqp_url(url: str, what: str = "the broker URL", *, required: bool | None = None) -> str:
    """``url`` if it may be used; `PlaintextRefused` when TLS is required and it is plaintext.

    ``required`` defaults to `require_tls` of the environment. ``no_verify_ssl`` (accept any
    certificate) counts as plaintext: it does not stop a man in the middle.
    """
    if not (require_tls() if required is None else required):
        return url
    scheme, _user, _hosts, _path, query = _split(url)
    if scheme != "amqps":
        raise PlaintextRefused(
            f"{what} {_redacted(url)} is plaintext and JIEXU_REQUIRE_TLS is on: use amqps:// "
            "(with ?cafile=...&certfile=...&keyfile=... as needed)"
        )
    if dict(parse_qsl(query)).get("no_verify_ssl", "0") != "0":
        raise PlaintextRefused(
            f"{what} {_redacted(url)} turns certificate checks off (no_verify_ssl) and "
            "JIEXU_REQUIRE_TLS is on"
        )
    return url


def check_http_url(url: str, what: str = "the management URL", *, required: bool | None = None) -> str:
    """``url`` if it may be used; `PlaintextRefused` for ``http://`` when TLS is required (each
    URL of a comma-separated list is checked)."""
    if not (require_tls() if required is None else required):
        return url
    for one in (u.strip() for u in url.split(",") if u.strip()):
        if not one.lower().startswith("https://"):
            raise PlaintextRefused(
                f"{what} {one} is not https:// and JIEXU_REQUIRE_TLS is on "
                "(set JIEXU_MANAGEMENT_URL=https://HOST:15671 and JIEXU_MANAGEMENT_CAFILE)"
            )
    return url


def login_url(base: str, username: str, password: str, vhost: str) -> str:
    """``base`` with this login and vhost: scheme, every host and port, and the query string
    (``cafile``, ``certfile``, ``keyfile``, ``heartbeat``...) kept. A host without a port gets
    the scheme's (5671 for amqps, 5672 for amqp)."""
    scheme, _user, hosts, _path, query = _split(base)
    default = AMQPS_PORT if scheme == "amqps" else AMQP_PORT
    netloc = ",".join(_with_port(h.strip(), default) for h in hosts.split(",") if h.strip())
    if not netloc:
        raise ValueError(f"no host in broker URL {_redacted(base)}")
    login = f"{quote(username, safe='')}:{quote(password, safe='')}"
    tail = f"?{query}" if query else ""
    return f"{scheme}://{login}@{netloc}/{quote(vhost, safe='')}{tail}"


def _with_port(host: str, default: int) -> str:
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        return host if "]:" in host else f"{host}:{default}"
    return host if ":" in host else f"{host}:{default}"


def url_tls_files(url: str) -> dict[str, str]:
    """``cafile``, ``certfile``, ``keyfile`` named in an AMQP URL's query (those present)."""
    try:
        query = _split(url)[4]
    except ValueError:
        return {}
    params = dict(parse_qsl(query))
    return {k: params[k] for k in ("cafile", "certfile", "keyfile") if params.get(k)}


def management_tls(
    amqp_url: str | None = None, env: Mapping[str, str] | None = None
) -> ssl.SSLContext | bool:
    """What the management client verifies its server with (httpx's ``verify``).

    ``JIEXU_MANAGEMENT_CAFILE``, else the ``cafile`` of ``amqp_url``; with neither, True (the
    system's CAs). A client certificate (``JIEXU_MANAGEMENT_CERTFILE``/``_KEYFILE``, else the AMQP
    URL's ``certfile``/``keyfile``) is presented when given. The host name is always checked.
    """
    env = os.environ if env is None else env
    from_url = url_tls_files(amqp_url) if amqp_url else {}
    cafile = env.get("JIEXU_MANAGEMENT_CAFILE") or from_url.get("cafile")
    certfile = env.get("JIEXU_MANAGEMENT_CERTFILE") or from_url.get("certfile")
    keyfile = env.get("JIEXU_MANAGEMENT_KEYFILE") or from_url.get("keyfile")
    if not cafile and not certfile:
        return True
    try:
        context = ssl.create_default_context(cafile=cafile)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"management API TLS files ({cafile or '-'}, {certfile or '-'}): {exc}") from exc
    return context
