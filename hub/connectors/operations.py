"""Runs the operations a flavor file's `endpoint:` section describes, for any vendor.

Assets ask for an operation by name (`fetch("maintenance", ids=device_ids)`) and get the
vendor's records by kind (`{"equipment": [...], "maintenance_record": [...]}`); which paths,
parameters, batch sizes and paging rules that takes is data in the flavor file. REST requests go
through `RestClient` (timeouts, size limit, breaker, retries), SOAP requests through the zeep
client, and every request waits its turn under the description's rate limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from hub.connectors.batching import distinct_batches
from hub.connectors.concurrency import bounded_map, read_ahead
from hub.connectors.eam import EamClient
from hub.connectors.endpoint import IDS, EndpointSpec, OperationSpec, PagesSpec, RequestSpec
from hub.connectors.rest import RestClient
from hub.connectors.retry import TransientError, VendorRejected
from hub.connectors.templates import MISSING, batch_value, fill, fill_path, fill_query
from hub.connectors.throttle import TokenBucket

Records = dict[str, list[Any]]


def value_at(reply: Any, path: str) -> Any:
    """The value at a dotted path of a JSON reply, or None."""
    current = reply
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _merge(into: Records, page: Records) -> None:
    for kind, records in page.items():
        into.setdefault(kind, []).extend(records)


class SystemClient:
    """One system's operations, as its flavor file (`source`) describes them.

    `sizes` lowers an operation's batch size (or, for an operation without a batch, its page
    size) from settings; it can never raise it above what the description allows.
    """

    def __init__(
        self,
        system: str,
        spec: EndpointSpec,
        source: str,
        *,
        base_url: str,
        rest: RestClient | None = None,
        soap: EamClient | None = None,
        sizes: Mapping[str, int | None] | None = None,
    ):
        self.system = system
        self.spec = spec
        self.source = source
        self.rest = rest
        self.soap = soap
        self._origin = _origin(base_url)
        self._throttle = TokenBucket(spec.requests_per_second) if spec.requests_per_second else None
        self._sizes: dict[str, int] = {}
        for name, size in (sizes or {}).items():
            if size is not None:
                self._sizes[name] = self._checked_size(name, size)

    def close(self) -> None:
        if self.rest is not None:
            self.rest.close()

    def __enter__(self) -> SystemClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def concurrency(self) -> int:
        """Requests of one operation the system takes at once, from its description."""
        return self.spec.concurrency

    @property
    def calls(self) -> int:
        """Requests sent so far, retries included."""
        return (self.rest.calls if self.rest else 0) + (self.soap.calls if self.soap else 0)

    def operation(self, name: str) -> OperationSpec:
        try:
            return self.spec.operations[name]
        except KeyError:
            known = ", ".join(self.spec.operations)
            raise KeyError(f"{self.source}: the endpoint has no operation {name!r}; it has {known}") from None

    def size(self, name: str) -> int:
        """Items per request of a batched operation, or records per page of an unbatched one."""
        return self._sizes.get(name) or self._described_size(name)

    # reading --------------------------------------------------------------------------

    def pages(self, name: str, ids: Iterable[str] | None = None, **values: Any) -> Iterator[Records]:
        """Records by kind, one reply at a time: every request of every batch, every page."""
        operation = self.operation(name)
        if operation.takes_ids != (ids is not None):
            needs = "needs ids" if operation.takes_ids else "takes no ids"
            raise ValueError(f"{self.source}: operation {name!r} {needs}")
        if ids is None:
            for request in operation.requests:
                yield from read_ahead(self._request_pages(name, request, values, None), self.concurrency - 1)
            return
        assert operation.batch is not None  # checked when the description was loaded

        def whole_batch(batch: list[str]) -> list[Records]:
            batch_values = {**values, IDS: batch_value(operation.batch, batch)}
            return [
                page for request in operation.requests for page in self._request_pages(name, request, batch_values, batch)
            ]

        for _, batch_pages in bounded_map(whole_batch, distinct_batches(ids, self.size(name)), self.concurrency):
            yield from batch_pages

    def fetch(self, name: str, ids: Iterable[str] | None = None, **values: Any) -> Records:
        """Every record the operation returns, by kind (a kind the replies lack is absent)."""
        records: Records = {}
        for page in self.pages(name, ids, **values):
            _merge(records, page)
        return records

    # writing --------------------------------------------------------------------------

    def call(self, name: str, **values: Any) -> Any:
        """One request of a single-request REST operation; the reply as it came."""
        requests = self.operation(name).requests
        request = requests[0]
        if len(requests) != 1 or request.protocol != "rest" or request.pages is not None or request.takes_ids:
            raise ValueError(f"{self.source}: operation {name!r} is not one plain REST request")
        return self._send(request, fill_path(request.path or "", values), fill_query(request.query, values), values)

    # internals ------------------------------------------------------------------------

    def _described_size(self, name: str) -> int:
        operation = self.operation(name)
        if operation.batch is not None:
            return operation.batch.size
        paged = [r.pages.size for r in operation.requests if r.pages is not None]
        if not paged:
            raise ValueError(f"{self.source}: operation {name!r} has neither a batch nor pages to size")
        return min(paged)

    def _checked_size(self, name: str, size: int) -> int:
        most = self._described_size(name)
        if not 1 <= size <= most:
            raise ValueError(f"{self.system} {name}: size must be 1..{most} ({self.source}), got {size}")
        return size

    def _page_size(self, name: str, pages: PagesSpec) -> int:
        return pages.size if self.operation(name).batch is not None else self._sizes.get(name, pages.size)

    def _request_pages(
        self, name: str, request: RequestSpec, values: Mapping[str, Any], batch: list[str] | None
    ) -> Iterator[Records]:
        if request.soap is not None:
            yield self._soap_records(request, values, batch)
            return
        path = fill_path(request.path or "", values)
        params = fill_query(request.query, values)
        if request.pages is None:
            yield self._records(name, request, self._send(request, path, params, values))
            return
        yield from self._paged(name, request, path, params, values)

    def _paged(
        self, name: str, request: RequestSpec, path: str, params: dict[str, Any], values: Mapping[str, Any]
    ) -> Iterator[Records]:
        pages = request.pages
        assert pages is not None
        size = self._page_size(name, pages)
        params = {**params, pages.size_param: str(size)}
        counter = pages.offset_param or pages.page_param  # offset and page styles count themselves
        position: int | None = 0 if pages.style == "offset" else pages.first_page
        seen: set[str] = set()
        target = path
        read, total = 0, None
        while position is not None:
            if counter is not None:
                params[counter] = str(position)
            reply = self._send(request, target, params, values)
            page = self._records(name, request, reply)
            read += sum(len(records) for records in page.values())
            if pages.total_at is not None and total is None:
                total = self._total(name, pages, reply)
            yield page
            if counter is not None:
                position = self._next_position(name, pages, position, size, page, reply)
                continue
            following = value_at(reply, pages.token_at or pages.next_at or "")
            if not following:
                break

            if str(following) in seen:
                raise TransientError(f"{self.system} {name}: the reply points back to a page already read")
            seen.add(str(following))
            if pages.token_param is not None:
                params = {**params, pages.token_param: str(following)}
            else:
                target, params = self._next_link(name, str(following)), {}
        if total is not None and read != total:
            # Absence of evidence is not clearance: a listing that lost records is not the whole answer.
            raise TransientError(f"{self.system} {name}: read {read} records over the pages, but the reply counts {total}; incomplete")

    def _total(self, name: str, pages: PagesSpec, reply: Any) -> int:
        try:
            return int(value_at(reply, pages.total_at or ""))
        except (TypeError, ValueError):
            raise TransientError(f"{self.system} {name}: the reply has no count at {pages.total_at!r}") from None

    def _next_position(
        self, name: str, pages: PagesSpec, position: int, size: int, page: Records, reply: Any
    ) -> int | None:
        """Offset and page styles: where the next page starts, or None after a short or final page."""
        if sum(len(records) for records in page.values()) < size:
            return None
        read = position + size if pages.style == "offset" else (position - pages.first_page + 1) * size
        if pages.total_at is not None and read >= self._total(name, pages, reply):
            return None
        return position + (size if pages.style == "offset" else 1)

    def _next_link(self, name: str, link: str) -> str:
        """A next-page link is followed only on the system's own server: credentials go nowhere else."""
        if _origin(link) != self._origin:
            raise VendorRejected(
                self.system, None, "next-page link leaves the system's server",
                message=f"{self.system} {name}: the next-page link points at another server; not followed",
            )
        return link

    def _send(self, request: RequestSpec, target: str, params: dict[str, Any], values: Mapping[str, Any]) -> Any:
        if self.rest is None:
            raise ValueError(f"{self.source}: no REST client for {self.system}")
        body = fill(request.body, values) if request.body is not None else MISSING
        kwargs: dict[str, Any] = {"params": params} if params else {}
        if body is not MISSING:
            kwargs["json"] = body
        if self._throttle is not None:
            self._throttle.acquire()
        return self.rest.request(request.method, target, **kwargs)

    def _records(self, name: str, request: RequestSpec, reply: Any) -> Records:
        records: Records = {}
        for where, kind in request.records.items():
            found = value_at(reply, where)
            if not isinstance(found, list):
                raise TransientError(f"{self.system} {name}: the reply has no list of records at {where!r}")
            records.setdefault(kind, []).extend(found)
        return records

    def _soap_records(self, request: RequestSpec, values: Mapping[str, Any], batch: list[str] | None) -> Records:
        soap = request.soap
        if self.soap is None or soap is None:
            raise ValueError(f"{self.source}: no SOAP client for {self.system}")
        args = {name: value for name, t in soap.params.items() if (value := fill(t, values)) is not MISSING}
        if soap.batch_param is not None:
            args[soap.batch_param] = batch
        if self._throttle is not None:
            self._throttle.acquire()
        reply = self.soap.call(soap, args)
        records: Records = {}
        for element, kind in request.records.items():
            records.setdefault(kind, []).extend(reply.get(element, []))
        return records
