"""A small client for the RabbitMQ management HTTP API (vhosts, users, permissions, queues).

On a cluster the client knows every node's API (``base_url`` may list several, comma-separated,
or pass ``fallback_urls``): a node that refuses the connection or does not answer within the
timeout (a frozen node accepts TCP and then says nothing) is left for the next one, so no call
hangs while one node is down or stalled.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["ManagementClient", "ManagementError"]


class ManagementError(RuntimeError):
    """The management API refused a request or could not be reached."""


def _q(name: str) -> str:
    return quote(name, safe="")


class ManagementClient:
    """Synchronous wrapper over the endpoints jiexu needs; every call is idempotent where the API is."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 10.0,
        *,
        fallback_urls: Sequence[str] = (),
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """``verify``: for ``https://``, an SSL context with the broker's CA (and a client
        certificate), or True for the system's CAs (`broker.tls.management_tls` picks it)."""
        urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        for extra in fallback_urls:
            extra = extra.rstrip("/")
            if extra not in urls:
                urls.append(extra)
        if not urls:
            raise ValueError("no management URL")
        self.base_urls = tuple(urls)
        self._current = 0
        # A short connect timeout: a node that is down refuses at once, a frozen one never answers.
        self._http = httpx.Client(
            auth=(username, password),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            verify=verify,
        )

    @property
    def base_url(self) -> str:
        """The node's API this client uses now (it moves on when a node does not answer)."""
        return self.base_urls[self._current]

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send to the current node; on a transport error or timeout, to the next ones in turn."""
        errors: list[str] = []
        for step in range(len(self.base_urls)):
            index = (self._current + step) % len(self.base_urls)
            url = self.base_urls[index]
            try:
                response = self._http.request(method, f"{url}/api{path}", json=json, headers=headers)
            except httpx.TransportError as exc:
                errors.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            self._current = index
            return response
        raise ManagementError("management API unreachable: " + "; ".join(errors))

    def _request(self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = ()) -> Any:
        try:
            response = self._send(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ManagementError(f"management API at {self.base_url} unreachable: {exc}") from exc
        if response.status_code in ok:
            return None
        if response.status_code >= 400:
            raise ManagementError(
                f"{method} {path} -> HTTP {response.status_code}: {response.text[:300]}"
            )
        if not response.content:
            return None
        return response.json()

    # -- broker -----------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/overview")
        return result

    # -- vhosts -----------------------------------------------------------------------------
    def create_vhost(self, vhost: str, default_queue_type: str | None = None) -> None:
        body: dict[str, Any] = {}
        if default_queue_type:
            body["default_queue_type"] = default_queue_type
        self._request("PUT", f"/vhosts/{_q(vhost)}", json=body)

    def delete_vhost(self, vhost: str) -> None:
        self._request("DELETE", f"/vhosts/{_q(vhost)}", ok=(404,))

    def list_vhosts(self) -> list[str]:
        return [v["name"] for v in self._request("GET", "/vhosts")]

    # -- users and permissions --------------------------------------------------------------
    def put_user(self, username: str, password: str, tags: str = "") -> None:
        self._request("PUT", f"/users/{_q(username)}", json={"password": password, "tags": tags})

    def delete_user(self, username: str) -> None:
        self._request("DELETE", f"/users/{_q(username)}", ok=(404,))

    def get_user(self, username: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._request("GET", f"/users/{_q(username)}")
        except ManagementError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return result

    def set_permissions(
        self, vhost: str, username: str, configure: str, write: str, read: str
    ) -> None:
        self._request(
            "PUT",
            f"/permissions/{_q(vhost)}/{_q(username)}",
            json={"configure": configure, "write": write, "read": read},
        )

    def get_permissions(self, vhost: str, username: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/permissions/{_q(vhost)}/{_q(username)}"
        )
        return result

    # -- policies ---------------------------------------------------------------------------
    def put_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: dict[str, Any],
        apply_to: str = "queues",
        priority: int = 0,
    ) -> None:
        self._request(
            "PUT",
            f"/policies/{_q(vhost)}/{_q(name)}",
            json={
                "pattern": pattern,
                "definition": definition,
                "apply-to": apply_to,
                "priority": priority,
            },
        )

    # -- exchanges, queues, bindings --------------------------------------------------------
    def declare_exchange(
        self, vhost: str, name: str, type_: str, arguments: dict[str, Any] | None = None
    ) -> None:
        self._request(
            "PUT",
            f"/exchanges/{_q(vhost)}/{_q(name)}",
            json={"type": type_, "durable": True, "auto_delete": False,
                  "arguments": arguments or {}},
        )

    def declare_queue(self, vhost: str, name: str, arguments: dict[str, Any] | None = None) -> None:
        self._request(
            "PUT",
            f"/queues/{_q(vhost)}/{_q(name)}",
            json={"durable": True, "auto_delete": False, "arguments": arguments or {}},
        )

    def bind_queue(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        existing = self._request("GET", f"/bindings/{_q(vhost)}/e/{_q(exchange)}/q/{_q(queue)}")
        if any(b.get("routing_key") == routing_key for b in existing or []):
            return
        self._request(
            "POST",
            f"/bindings/{_q(vhost)}/e/{_q(exchange)}/q/{_q(queue)}",
            json={"routing_key": routing_key, "arguments": {}},
        )

    def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/queues/{_q(vhost)}")
        return result

    def delete_queue(self, vhost: str, name: str) -> None:
        self._request("DELETE", f"/queues/{_q(vhost)}/{_q(name)}", ok=(404,))

    def get_queue(self, vhost: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/queues/{_q(vhost)}/{_q(name)}")
        return result

    def peek_messages(self, vhost: str, queue: str, count: int = 20) -> list[dict[str, Any]]:
        """Up to ``count`` messages of ``queue``, put back afterwards (``ack_requeue_true``): for
        an operator's look at a queue no agency reads (the unroutable one). Each has
        ``routing_key``, ``properties`` and ``payload`` (text, or base64 when not UTF-8)."""
        result: list[dict[str, Any]] = self._request(
            "POST",
            f"/queues/{_q(vhost)}/{_q(queue)}/get",
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 100_000},
        )
        return result

    def list_exchanges(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/exchanges/{_q(vhost)}")
        return result

    def list_bindings(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/bindings/{_q(vhost)}")
        return result

    def list_users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/users")
        return result

    def list_permissions(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/vhosts/{_q(vhost)}/permissions")
        return result

    # -- definitions ------------------------------------------------------------------------
    def get_definitions(self, vhost: str | None = None) -> dict[str, Any]:
        path = "/definitions" if vhost is None else f"/definitions/{_q(vhost)}"
        result: dict[str, Any] = self._request("GET", path)
        return result

    def load_definitions(self, definitions: dict[str, Any], vhost: str | None = None) -> None:
        """Merge a definitions document into the broker (``vhost`` given: that vhost's part only)."""
        path = "/definitions" if vhost is None else f"/definitions/{_q(vhost)}"
        self._request("POST", path, json=definitions)

    def list_connections(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/connections")
        return result

    def close_connection(self, name: str, reason: str = "closed by jiexu") -> None:
        self._send("DELETE", f"/connections/{_q(name)}", headers={"X-Reason": reason})

    # -- cluster ----------------------------------------------------------------------------
    def list_nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes as this node sees them (``name``, ``running``, ``partitions``...)."""
        result: list[dict[str, Any]] = self._request("GET", "/nodes")
        return result
