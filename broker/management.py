"""A small client for the RabbitMQ management HTTP API (vhosts, users, permissions, queues)."""

from __future__ import annotations

import ssl
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
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """``verify``: for ``https://``, an SSL context with the broker's CA (and a client
        certificate), or True for the system's CAs (`broker.tls.management_tls` picks it)."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/api", auth=(username, password), timeout=timeout,
            verify=verify,
        )

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

    def _request(self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = ()) -> Any:
        try:
            response = self._http.request(method, path, json=json)
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
        self._http.request(
            "DELETE", f"/connections/{_q(name)}", headers={"X-Reason": reason}
        )
