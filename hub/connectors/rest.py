"""The shared REST transport: httpx with timeouts, auth and the retry policy.

Every REST connector goes through `RestClient.request`, so timeouts, auth and
retry behaviour cannot drift between systems.
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.connectors.auth import auth_headers, basic_credentials
from hub.connectors.retry import RetryPolicy, TransientError, VendorRejected, parse_retry_after
from hub.settings import SystemEndpoint


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
        basic = basic_credentials(endpoint)
        self.system = system
        self.retry = retry
        self.calls = 0
        self._http = httpx.Client(
            base_url=endpoint.url,
            auth=httpx.BasicAuth(*basic) if basic else None,
            headers=auth_headers(endpoint),
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
        try:
            return response.json()
        except ValueError:
            # A cut-off or garbled body is worth another try; the next answer may be whole.
            raise TransientError(f"{self.system} {method} {path}: reply is not JSON") from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.retry.call(lambda: self._once(method, path, **kwargs))
