"""The shape of a flavor file's `endpoint:` section: how the hub talks to one vendor system.

An endpoint description names, per operation the hub needs, the requests one batch of IDs
takes (REST method, path, query and body templates, or a SOAP operation), how replies are paged
and where the records are in them. Connectors run it (`hub.connectors.operations`); nothing in
it is executed. Credentials never appear here: the `auth` scheme says which of the credentials
in settings to send, and how.

Templates hold placeholders such as ``{id}``, ``{since}`` or ``{ids}`` (the batch of IDs);
the full format, with an example per paging style, is in ``docs/endpoints.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ``{name}`` in a template: filled from the values an operation is run with.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: The placeholder that takes the batch of IDs; inside a batch's ``item``, ``{id}`` is one ID.
IDS = "ids"

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def placeholders(template: Any) -> set[str]:
    """Every placeholder name in a template: a text, or objects and lists holding texts."""
    if isinstance(template, str):
        return set(PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return {name for value in template.values() for name in placeholders(value)}
    if isinstance(template, list):
        return {name for value in template for name in placeholders(value)}
    return set()


def whole_placeholder(template: Any) -> str | None:
    """The name, when a template is exactly one placeholder (its value is then used as it is)."""
    if isinstance(template, str):
        match = PLACEHOLDER.fullmatch(template)
        return match.group(1) if match else None
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(_Strict):
    """Which credential from settings travels, and how: `api_key` names its header."""

    scheme: Literal["none", "basic", "bearer", "api_key"]
    header: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _header_only_for_api_key(self) -> AuthSpec:
        if self.scheme == "api_key" and self.header is None:
            raise ValueError("scheme api_key needs 'header': the header the key travels in (e.g. apikey)")
        if self.scheme != "api_key" and self.header is not None:
            raise ValueError(f"'header' is only for scheme api_key, not {self.scheme}")
        return self


class BatchSpec(_Strict):
    """How many items one request carries, and how IDs are written into ``{ids}``.

    Each ID is written by ``item`` (``{id}`` is the ID, escaped by ``escape``); with ``join`` the
    items become one text, without it ``{ids}`` is the list of items (a JSON list in a body,
    a repeated parameter in a query).
    """

    size: int = Field(ge=1)
    item: str = "{id}"
    escape: Literal["none", "json", "odata"] = "none"
    join: str | None = None

    @field_validator("item")
    @classmethod
    def _item_writes_one_id(cls, item: str) -> str:
        found = placeholders(item)
        if found != {"id"}:
            raise ValueError(f"item must hold exactly the placeholder {{id}}, found {sorted(found) or 'none'}")
        return item


PagingStyle = Literal["cursor", "next_link", "offset", "page"]

# Keys each paging style needs; a key of another style is refused.
_STYLE_KEYS: dict[str, frozenset[str]] = {
    "cursor": frozenset({"token_param", "token_at"}),
    "next_link": frozenset({"next_at"}),
    "offset": frozenset({"offset_param"}),
    "page": frozenset({"page_param"}),
}
_STYLE_OPTIONAL: dict[str, frozenset[str]] = {
    "next_link": frozenset({"total_at"}),
    "offset": frozenset({"total_at"}),
    "page": frozenset({"total_at", "first_page"}),
}


class PagesSpec(_Strict):
    """How a reply continues on the next page, and when it ends.

    - ``cursor``: the reply holds a token at ``token_at``, sent back in ``token_param``;
      no token, no more pages.
    - ``next_link``: the reply holds the next page's absolute URL at ``next_at``, followed as
      it is; no link, no more pages.
    - ``offset``: ``offset_param`` counts the records skipped (from 0) in steps of ``size``.
    - ``page``: ``page_param`` numbers the pages from ``first_page``.

    ``size`` records are asked for in ``size_param``. Offset and page listings end on a short
    page, or once ``total_at`` (the reply's count of all records) is reached. With ``total_at``
    the records read over all pages must add up to that count: a listing that comes up short
    is incomplete, never taken as the whole answer.
    """

    style: PagingStyle
    size: int = Field(ge=1)
    size_param: str = Field(min_length=1)
    token_param: str | None = Field(default=None, min_length=1)
    token_at: str | None = Field(default=None, min_length=1)
    next_at: str | None = Field(default=None, min_length=1)
    offset_param: str | None = Field(default=None, min_length=1)
    page_param: str | None = Field(default=None, min_length=1)
    first_page: int = Field(default=1, ge=0)
    total_at: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _keys_fit_the_style(self) -> PagesSpec:
        needed = _STYLE_KEYS[self.style]
        missing = sorted(key for key in needed if getattr(self, key) is None)
        if missing:
            raise ValueError(f"paging style {self.style} needs {', '.join(missing)}")
        # A key at its default says nothing, so a spec's own dump validates again.
        given = {
            key for key in self.model_fields_set - {"style", "size", "size_param"}
            if getattr(self, key) != type(self).model_fields[key].default
        }
        foreign = sorted(given - needed - _STYLE_OPTIONAL.get(self.style, frozenset()))
        if foreign:
            raise ValueError(f"{', '.join(foreign)}: not part of paging style {self.style}")
        return self


class SoapSpec(_Strict):
    """A WSDL operation: the batch of IDs goes in ``batch_param``, other arguments in ``params``."""

    operation: str = Field(min_length=1)
    binding: str = Field(pattern=r"^\{[^}]+\}\S+$", description="{namespace}BindingName, as in the WSDL")
    batch_param: str | None = Field(default=None, min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    # The response element's attribute counting the records it carries: a reply that carries
    # fewer (or more) is incomplete, never taken as the whole answer.
    count_at: str | None = Field(default=None, min_length=1)
    # Where the service listens, after the system's URL (none: at the URL itself).
    path: str | None = Field(default=None, pattern=r"^/")
    # flat: each record a dict of its leaf values (fast, for bulk reads); tree: nested as the
    # WSDL's schema has it (lists where it allows several, "@name" attributes, "#text").
    reply: Literal["flat", "tree"] = "flat"


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_REST_KEYS = frozenset({"method", "path", "query", "body", "pages"})


class RequestSpec(_Strict):
    """One request of an operation, and which records its reply holds.

    ``records`` maps where the records are (a dotted path in a JSON reply, or a child element
    of a SOAP response) to the kind of record found there.
    """

    protocol: Literal["rest", "soap"] = "rest"
    method: HttpMethod = "GET"
    path: str | None = Field(default=None, pattern=r"^/")
    query: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    pages: PagesSpec | None = None
    soap: SoapSpec | None = None
    records: dict[str, str] = Field(default_factory=dict)

    @field_validator("records")
    @classmethod
    def _kinds_are_names(cls, records: dict[str, str]) -> dict[str, str]:
        for where, kind in records.items():
            if not where.strip() or not re.match(_NAME, kind):
                raise ValueError(f"{where!r}: {kind!r} is not a record kind name")
        return records

    @model_validator(mode="after")
    def _fits_the_protocol(self) -> RequestSpec:
        if self.protocol == "rest":
            if self.path is None:
                raise ValueError("a rest request needs 'path'")
            if self.soap is not None:
                raise ValueError("'soap' is only for protocol soap")
        else:
            if self.soap is None:
                raise ValueError("a soap request needs 'soap': operation, binding and batch_param")
            foreign = sorted(self.model_fields_set & _REST_KEYS)
            if foreign:
                raise ValueError(f"{', '.join(foreign)}: only for protocol rest")
        if self.pages is not None and not self.records:
            raise ValueError("'pages' needs 'records': the records that are counted page by page")
        return self

    def templates(self) -> Iterator[tuple[str, Any]]:
        """(where, template) of everything filled from values: path, query, body, SOAP params."""
        if self.path is not None:
            yield "path", self.path
        for name, template in self.query.items():
            yield f"query.{name}", template
        if self.body is not None:
            yield "body", self.body
        if self.soap is not None:
            for name, template in self.soap.params.items():
                yield f"soap.params.{name}", template

    @property
    def takes_ids(self) -> bool:
        return any(IDS in placeholders(t) for _, t in self.templates()) or (
            self.soap is not None and self.soap.batch_param is not None
        )


class OperationSpec(_Strict):
    """One thing the hub does with a system: the requests each batch of IDs takes, in order."""

    batch: BatchSpec | None = None
    requests: list[RequestSpec] = Field(min_length=1)

    @property
    def takes_ids(self) -> bool:
        return any(r.takes_ids for r in self.requests)

    @model_validator(mode="after")
    def _ids_have_a_batch(self) -> OperationSpec:
        if self.takes_ids and self.batch is None:
            raise ValueError("requests use {ids} (or soap.batch_param) but the operation has no 'batch'")
        for request in self.requests:
            for where, template in request.templates():
                self._check_ids_use(where, template)
        return self

    def _check_ids_use(self, where: str, template: Any) -> None:
        """Without ``join`` the batch is a list, which only a whole body value or query value can hold."""
        if IDS not in placeholders(template) or (self.batch is not None and self.batch.join is not None):
            return
        as_list_ok = where.startswith(("query.", "body", "soap.params.")) and _ids_only_whole(template)
        if not as_list_ok:
            raise ValueError(f"{where}: {{ids}} inside text needs batch.join (how the IDs are joined)")


def _ids_only_whole(template: Any) -> bool:
    """Whether every ``{ids}`` in a template stands alone as a whole value."""
    if isinstance(template, str):
        return IDS not in placeholders(template) or whole_placeholder(template) == IDS
    if isinstance(template, dict):
        return all(_ids_only_whole(v) for v in template.values())
    if isinstance(template, list):
        return all(_ids_only_whole(v) for v in template)
    return True


class EndpointSpec(_Strict):
    """How to talk to one system: auth, a request-rate limit, and the operations the hub runs."""

    auth: AuthSpec | None = None  # absent: whatever credentials settings hold are sent
    requests_per_second: float | None = Field(default=None, gt=0)
    # Requests of one operation in flight at once (batches, bulk posts, hold writes).
    concurrency: int = Field(default=1, ge=1, le=16)
    operations: dict[str, OperationSpec] = Field(min_length=1)

    @field_validator("operations")
    @classmethod
    def _operation_names(cls, operations: dict[str, OperationSpec]) -> dict[str, OperationSpec]:
        for name in operations:
            if not re.match(_NAME, name):
                raise ValueError(f"{name!r} is not an operation name (letters, digits, _)")
        return operations

    def protocols(self) -> set[str]:
        return {r.protocol for op in self.operations.values() for r in op.requests}
