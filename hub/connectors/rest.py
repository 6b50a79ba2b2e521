"""The shared REST transport: httpx with timeouts, auth and the retry policy.

Every REST connector goes through `RestClient.request`, so timeouts, auth and
retry behaviour cannot drift between systems.
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.connectors.retry import RetryPolicy, TransientError, VendorRejected, parse_retry_after
from hub.settings import SystemEndpoint


def _auth_for(endpoint: SystemEndpoint) -> tuple[httpx.Auth | None, dict[str, str]]:
    headers: dict[str, str] = {}
    auth: httpx.Auth | None = None
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token.get_secret_value()}"
    if endpoint.api_key is not None:
        headers[endpoint.api_key_header] = endpoint.api_key.get_secret_value()
    if endpoint.username is not None and endpoint.password is not None:
        auth = httpx.BasicAuth(endpoint.username, endpoint.password.get_secret_value())
    return auth, headers


class RestClient:
    def __init__(
        self,
        system: str,
        endpoint: SystemEndpoint,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        retry: RetryPolicy,
    ):
        auth, headers = _auth_for(endpoint)
        self.system = system
        self.retry = retry
        self.calls = 0
        self._http = httpx.Client(
            base_url=endpoint.url,
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # Covers connect errors, resets and read timeouts; the message never holds credentials.
            raise TransientError(f"{self.system} {method} {path}: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"{self.system} {method} {path}: HTTP {response.status_code}",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code >= 400:
            raise VendorRejected(self.system, response.status_code, response.text[:500])
        return response.json()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.retry.call(lambda: self._once(method, path, **kwargs))
