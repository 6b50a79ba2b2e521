"""The shared REST transport: httpx with timeouts, TLS, auth, a size limit, a breaker and retries.

Every REST connector goes through `RestClient.request`, so these cannot drift between systems.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from hub.connectors.auth import auth_headers, basic_credentials, redact, secret_values
from hub.connectors.bounded import DEFAULT_MAX_RESPONSE_BYTES, read_capped
from hub.connectors.breaker import SystemBreaker, breaker_for
from hub.connectors.retry import (
    RetryPolicy,
    TransientError,
    UntrustedCertificate,
    VendorRejected,
    parse_retry_after,
)
from hub.connectors.tls import certificate_problem, httpx_verify
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
        breaker: SystemBreaker | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ca_bundle: str | None = None,
    ):
        basic = basic_credentials(endpoint)
        self.system = system
        self.retry = retry
        self.breaker = breaker or breaker_for(system, endpoint.url)
        self.max_response_bytes = max_response_bytes
        self.calls = 0
        self._secrets = secret_values(endpoint)
        self._http = httpx.Client(
            base_url=endpoint.url,
            auth=httpx.BasicAuth(*basic) if basic else None,
            headers=auth_headers(endpoint),
            # Connect, read, write and pool waits are all bounded; none is left at "forever".
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            verify=httpx_verify(ca_bundle),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls += 1
        where = f"{self.system} {method} {path}"
        try:
            with self._http.stream(method, path, **kwargs) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise TransientError(
                        f"{where}: HTTP {status}", retry_after_s=parse_retry_after(response.headers.get("Retry-After"))
                    )
                body = read_capped(self.system, status, response.headers, response.iter_bytes(), self.max_response_bytes)
        except httpx.TransportError as exc:
            problem = certificate_problem(exc)
            if problem:
                raise UntrustedCertificate(self.system, problem) from None
            # Covers connect errors, resets, read timeouts and cut-off bodies; never credentials.
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        if status >= 400:
            detail = redact(body.decode("utf-8", errors="replace"), self._secrets)[:500]
            raise VendorRejected(self.system, status, detail)
        try:
            return json.loads(body)
        except ValueError:
            # A cut-off or garbled body is worth another try; the next answer may be whole.
            raise TransientError(f"{where}: reply is not JSON") from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.retry.call(lambda: self.breaker.call(self._once, method, path, **kwargs))
