"""zeep's transport with a bound on everything: connect and read timeouts on every request
(the WSDL download included), verified TLS, and a size limit on every reply.

zeep's own transport reads replies whole and, for operations, has no timeout unless given
one; here the reply is streamed through `read_capped` and refused as soon as it is too big.
TLS trust is passed with every request: requests lets `REQUESTS_CA_BUNDLE` override a
session's own `verify`, which would silently drop the plant's CA bundle.
"""

from __future__ import annotations

from contextlib import closing

import requests
from zeep.transports import Transport

from hub.connectors.bounded import read_capped
from hub.connectors.tls import requests_verify

CHUNK_BYTES = 64 * 1024


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
    ):
        timeouts = (connect_timeout_s, read_timeout_s)
        super().__init__(session=session, timeout=timeouts, operation_timeout=timeouts)
        self.system = system
        self.max_response_bytes = max_response_bytes
        self.verify = requests_verify(ca_bundle)

    def _capped(self, response: requests.Response) -> requests.Response:
        with closing(response):
            # requests keeps a read body in `_content`; filling it keeps `.content` and `.text` working.
            response._content = read_capped(
                self.system,
                response.status_code,
                response.headers,
                response.iter_content(CHUNK_BYTES),
                self.max_response_bytes,
            )
        return response

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        response = self.session.post(
            address, data=message, headers=headers, timeout=self.operation_timeout, verify=self.verify, stream=True
        )
        return self._capped(response)

    def _load_remote_data(self, url: str) -> bytes:
        """WSDL and schema downloads, under the same timeouts and limit as calls."""
        response = self._capped(self.session.get(url, timeout=self.load_timeout, verify=self.verify, stream=True))
        response.raise_for_status()
        return response.content
