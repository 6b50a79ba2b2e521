"""zeep's transport with a bound on everything: connect and read timeouts on every request
(the WSDL download included), a total deadline, verified TLS, and a size limit on every reply.

zeep's own transport reads replies whole and, for operations, has no timeout unless given
one; here the reply is streamed through `read_capped` and refused as soon as it is too big.
Each request has a deadline from its start: its timeouts are cut to the time left, and the
body is read as it arrives (`read1`, not a read that waits for a whole chunk), so a reply
that trickles in is cut off once the deadline passes.
TLS trust is passed with every request: requests lets `REQUESTS_CA_BUNDLE` override a
session's own `verify`, which would silently drop the plant's CA bundle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import requests
import urllib3
from zeep.transports import Transport

from hub.connectors.bounded import read_capped
from hub.connectors.deadline import DEFAULT_REQUEST_DEADLINE_S, Deadline
from hub.connectors.tls import requests_verify

CHUNK_BYTES = 64 * 1024


def _arriving(response: requests.Response) -> Iterator[bytes]:
    """The decoded body in pieces as they arrive, with urllib3's errors raised as requests' own."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # an older urllib3: whole chunks, so the deadline is checked per chunk
        yield from response.iter_content(CHUNK_BYTES)
        return
    try:
        while chunk := read1(CHUNK_BYTES, decode_content=True):
            yield chunk
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(str(exc)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.exceptions.ConnectionError(str(exc)) from None


class BoundedTransport(Transport):
    def __init__(
        self,
        system: str,
        session: requests.Session,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_response_bytes: int,
        ca_bundle: str | None,
        deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
    ):
        timeouts = (connect_timeout_s, read_timeout_s)
        super().__init__(session=session, timeout=timeouts, operation_timeout=timeouts)
        self.system = system
        self.max_response_bytes = max_response_bytes
        self.deadline_s = deadline_s
        self.verify = requests_verify(ca_bundle)

    def _bounded(self, what: str, send: Any, timeouts: tuple[float, float]) -> requests.Response:
        """Send with this request's deadline, and read the whole reply within it and the size limit."""
        deadline = Deadline(f"{self.system} {what}", self.deadline_s)
        connect_s, read_s = timeouts
        try:
            response = send((deadline.cap(connect_s), deadline.cap(read_s)))
            with closing(response):
                # requests keeps a read body in `_content`; filling it keeps `.content` and `.text` working.
                response._content = read_capped(
                    self.system,
                    response.status_code,
                    response.headers,
                    _arriving(response),
                    self.max_response_bytes,
                    deadline,
                )
        except requests.RequestException:
            if deadline.expired():  # a timeout cut short by the deadline says so
                raise deadline.exceeded() from None
            raise
        return response

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        action = str(headers.get("SOAPAction") or "").strip('"').rsplit("/", 1)[-1]
        return self._bounded(
            action or "POST",
            lambda timeout: self.session.post(
                address, data=message, headers=headers, timeout=timeout, verify=self.verify, stream=True
            ),
            self.operation_timeout,
        )

    def _load_remote_data(self, url: str) -> bytes:
        """WSDL and schema downloads, under the same timeouts, deadline and limit as calls."""
        response = self._bounded(
            "WSDL download",
            lambda timeout: self.session.get(url, timeout=timeout, verify=self.verify, stream=True),
            self.load_timeout,
        )
        response.raise_for_status()
        return response.content
