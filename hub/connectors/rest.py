"""The shared REST transport: httpx with timeouts and a total deadline, TLS, auth, a size limit,
JSON checks, a breaker and retries.

Every REST connector goes through `RestClient.request`, so these cannot drift between systems.
httpx's timeouts bound each wait on its own (a read timeout restarts with every byte), so each
attempt also has a deadline: its timeouts are cut to the time left when it starts, and its body
is cut off as soon as the deadline passes.
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.connectors.auth import auth_headers, basic_credentials, redact, secret_values
from hub.connectors.bounded import DEFAULT_MAX_RESPONSE_BYTES, read_capped
from hub.connectors.breaker import SystemBreaker, breaker_for
from hub.connectors.deadline import DEFAULT_REQUEST_DEADLINE_S, Deadline
from hub.connectors.replies import parse_json_reply
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
        deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
    ):
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        basic = basic_credentials(endpoint)
        self.system = system
        self.retry = retry
        self.breaker = breaker or breaker_for(system, endpoint.url)
        self.max_response_bytes = max_response_bytes
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
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

    def _timeouts(self, deadline: Deadline) -> httpx.Timeout:
        """This attempt's timeouts: the configured ones, none longer than the time it has left."""
        read = deadline.cap(self.read_timeout_s)
        return httpx.Timeout(read, connect=deadline.cap(self.connect_timeout_s), write=read, pool=read)

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls += 1
        where = f"{self.system} {method} {path}"
        deadline = Deadline(where, self.deadline_s)
        try:
            with self._http.stream(method, path, timeout=self._timeouts(deadline), **kwargs) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise TransientError(
                        f"{where}: HTTP {status}", retry_after_s=parse_retry_after(response.headers.get("Retry-After"))
                    )
                body = read_capped(
                    self.system, status, response.headers, response.iter_bytes(), self.max_response_bytes, deadline
                )
        except httpx.TransportError as exc:
            problem = certificate_problem(exc)
            if problem:
                raise UntrustedCertificate(self.system, problem) from None
            if deadline.expired():  # a timeout cut short by the deadline says so
                raise deadline.exceeded() from None
            # Covers connect errors, resets, read timeouts and cut-off bodies; never credentials.
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        if status >= 400:
            detail = redact(body.decode("utf-8", errors="replace"), self._secrets)[:500]
            raise VendorRejected(self.system, status, detail)
        return parse_json_reply(self.system, where, status, response.headers, body)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.retry.call(lambda: self.breaker.call(self._once, method, path, **kwargs))
