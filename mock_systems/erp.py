"""ERP mock: safety-cost journal entries, shaped like a synchronous journal-entry API.

Two behaviours matter most to the hub and are modelled after SAP's synchronous services:

- exactly-once: a `MessageHeader/UUID` already posted within the duplicate window posts nothing
  and returns the original confirmation with `"Duplicate": true`;
- asking by `DocumentReferenceID` is how a client resolves an unclear outcome (a timeout after
  the ERP committed) before it sends again; the paged ledger listing is how it reconciles
  everything it believes posted against what the ERP holds.

Only successful postings are remembered as seen: a rejected entry left no trace, so sending it
again (after the master data was fixed) is a new attempt. Document numbers are one global
sequence of strings, e.g. "5100000001", "5100000002".
"""

from __future__ import annotations

import bisect
import copy
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .base import MockSystem, error
from .fixtures import FixtureError, load_fixture

MAX_REQUESTS = 200
DEFAULT_LEDGER_SIZE = 200
MAX_LEDGER_SIZE = 1000
REQUIRED_TEXT = ("CompanyCode", "DocumentReferenceID", "PostingDate", "TransactionCurrency", "GLAccount", "CostCenter")
DOCUMENT_FIELDS = (
    "AccountingDocument",
    "CompanyCode",
    "FiscalYear",
    "DocumentReferenceID",
    "MessageUUID",
    "PostingDate",
    "GLAccount",
    "CostCenter",
    "Amount",
    "TransactionCurrency",
)


class Malformed(ValueError):
    """A request body that is not the documented shape: 400, nothing posted."""


def _utc_iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ledger_window(params: Any) -> tuple[int, int]:
    """(page, size) of a ledger listing request; `page` is required, `size` has a default."""
    try:
        page = int(params["page"])
        size = int(params.get("size", DEFAULT_LEDGER_SIZE))
    except ValueError:
        raise Malformed(f"page and size must be integers, got {params['page']!r} and {params.get('size')!r}") from None
    if page < 1:
        raise Malformed(f"page must be at least 1, got {page}")
    if not 1 <= size <= MAX_LEDGER_SIZE:
        raise Malformed(f"size must be between 1 and {MAX_LEDGER_SIZE}, got {size}")
    return page, size


def _document(doc: dict) -> dict:
    """A posted document as the query endpoints show it."""
    return {field: doc[field] for field in DOCUMENT_FIELDS}


def parse_create_request(item: Any, where: str) -> tuple[str, dict]:
    """(UUID, journal entry with a Decimal `Amount`) from one JournalEntryCreateRequest."""
    if not isinstance(item, dict):
        raise Malformed(f"{where} is not an object")
    header = item.get("MessageHeader")
    uuid = header.get("UUID") if isinstance(header, dict) else None
    if not isinstance(uuid, str) or not uuid.strip():
        raise Malformed(f"{where}.MessageHeader.UUID is missing")
    entry = item.get("JournalEntry")
    if not isinstance(entry, dict):
        raise Malformed(f"{where}.JournalEntry is missing")
    for field in REQUIRED_TEXT:
        if not isinstance(entry.get(field), str) or not entry[field].strip():
            raise Malformed(f"{where}.JournalEntry.{field} is missing or not a string")
    try:
        if len(entry["PostingDate"]) != 10:
            raise ValueError
        date.fromisoformat(entry["PostingDate"])
    except ValueError:
        raise Malformed(f"{where}.JournalEntry.PostingDate must be YYYY-MM-DD, got {entry['PostingDate']!r}") from None
    raw_amount = entry.get("Amount")
    try:
        if isinstance(raw_amount, bool) or not isinstance(raw_amount, (str, int, float)):
            raise InvalidOperation
        amount = Decimal(str(raw_amount).strip())
        if not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise Malformed(f"{where}.JournalEntry.Amount is not a decimal number: {raw_amount!r}") from None
    text = entry.get("DocumentHeaderText")
    if text is not None and not isinstance(text, str):
        raise Malformed(f"{where}.JournalEntry.DocumentHeaderText must be a string")
    return uuid.strip(), {**entry, "Amount": amount}


class ErpSystem(MockSystem):
    name = "erp"
    persistent = True

    def load_fixtures(self) -> None:
        company = load_fixture(self.fixtures_dir, "erp/company.json", expect=dict)
        try:
            self._companies = {
                c["CompanyCode"]: {
                    "cost_centers": {cc["CostCenter"] for cc in c["CostCenters"]},
                    "gl_accounts": {gl["GLAccount"] for gl in c["GLAccounts"]},
                }
                for c in company["companyCodes"]
            }
            self._first_document = int(company.get("firstAccountingDocument", "5100000001"))
            self._window = timedelta(days=float(company.get("duplicateWindowDays", 7)))
        except (KeyError, TypeError, ValueError) as exc:
            raise FixtureError(f"erp/company.json is not the documented shape: {exc!r}") from None

    def clear_state(self) -> None:
        self._documents: list[dict] = []
        self._by_company: dict[str, list[dict]] = {}
        self._seen: dict[str, dict] = {}  # UUID -> {"receivedAt", "confirmation"}
        self._next_document = self._first_document

    def _book(self, document: dict) -> None:
        self._documents.append(document)
        self._by_company.setdefault(document["CompanyCode"], []).append(document)

    def apply_change(self, change: dict) -> None:
        document = change["document"]
        self._book(document)
        self._seen[document["MessageUUID"]] = change["seen"]
        self._next_document = max(self._next_document, int(document["AccountingDocument"]) + 1)

    def admin_state(self) -> dict:
        return {"documents": self._documents}

    def master_data_problems(self, company_code: str, cost_center: str | None, gl_account: str) -> list[tuple[str, str]]:
        """(TypeID, Note) for a company code, cost center (None: not asked) or GL account the ERP does not know."""
        company = self._companies.get(company_code)
        if company is None:
            return [("COMPANY_CODE_UNKNOWN", f"Company code {company_code} does not exist")]
        problems = []
        if cost_center is not None and cost_center not in company["cost_centers"]:
            problems.append(
                ("COST_CENTER_UNKNOWN", f"Cost center {cost_center} does not exist in company code {company_code}")
            )
        if gl_account not in company["gl_accounts"]:
            problems.append(
                ("GL_ACCOUNT_UNKNOWN", f"G/L account {gl_account} is not defined for company code {company_code}")
            )
        return problems

    def _problems(self, entry: dict) -> list[tuple[str, str]]:
        problems = self.master_data_problems(entry["CompanyCode"], entry["CostCenter"], entry["GLAccount"])
        if problems and problems[0][0] == "COMPANY_CODE_UNKNOWN":
            return problems
        if entry["Amount"] <= 0:
            problems.append(("AMOUNT_NOT_POSITIVE", f"Amount {entry['Amount']} must be greater than zero"))
        return problems

    def post(self, uuid: str, entry: dict, problems: list[tuple[str, str]] | None = None) -> tuple[dict, bool]:
        """The confirmation for one entry, and whether anything was posted. `problems` are the
        caller's own checks of the entry (the SOAP face checks every item); by default the
        ERP checks the entry's one GL account, cost center and amount."""
        now = datetime.now(timezone.utc)
        seen = self._seen.get(uuid)
        if seen is not None and now - datetime.fromisoformat(seen["receivedAt"]) <= self._window:
            return {**copy.deepcopy(seen["confirmation"]), "Duplicate": True}, False
        problems = self._problems(entry) if problems is None else problems
        if problems:
            log_items = [{"TypeID": type_id, "SeverityCode": "3", "Note": note} for type_id, note in problems]
            confirmation = {
                "MessageHeader": {"UUID": uuid},
                "Log": {"MaximumLogItemSeverityCode": "3", "Item": log_items},
                "JournalEntry": {"CompanyCode": entry["CompanyCode"]},
                "Duplicate": False,
            }
            return confirmation, False
        number = str(self._next_document)
        self._next_document += 1
        fiscal_year = entry["PostingDate"][:4]
        self._book(
            {
                "AccountingDocument": number,
                "CompanyCode": entry["CompanyCode"],
                "FiscalYear": fiscal_year,
                "DocumentReferenceID": entry["DocumentReferenceID"],
                "MessageUUID": uuid,
                "PostingDate": entry["PostingDate"],
                "GLAccount": entry["GLAccount"],
                "CostCenter": entry["CostCenter"],
                "Amount": str(entry["Amount"]),
                "TransactionCurrency": entry["TransactionCurrency"],
                "DocumentHeaderText": entry.get("DocumentHeaderText"),
                "PostedAt": _utc_iso(now),
                **({"Items": entry["Items"]} if "Items" in entry else {}),
            }
        )
        confirmation = {
            "MessageHeader": {"UUID": uuid},
            "Log": {"MaximumLogItemSeverityCode": "1", "Item": []},
            "JournalEntry": {
                "AccountingDocument": number,
                "CompanyCode": entry["CompanyCode"],
                "FiscalYear": fiscal_year,
            },
            "Duplicate": False,
        }
        self._seen[uuid] = {"receivedAt": _utc_iso(now), "confirmation": confirmation}
        return copy.deepcopy(confirmation), True

    def post_all(self, requests: list[tuple[str, dict]], problems: list[list | None] | None = None) -> list[dict]:
        """Post each (UUID, entry) in order, with the caller's problems of each if given; journal what was posted."""
        confirmations, changes = [], []
        for (uuid, entry), found in zip(requests, problems or [None] * len(requests)):
            confirmation, posted = self.post(uuid, entry, found)
            confirmations.append(confirmation)
            if posted:
                changes.append({"document": self._documents[-1], "seen": self._seen[uuid]})
        self.state_changed(*changes)
        return confirmations

    def documents_by_reference(self, reference: str) -> list[dict]:
        """Every posted document with this DocumentReferenceID, in posting order."""
        return [_document(d) for d in self._documents if d["DocumentReferenceID"] == reference]

    def malformed_response(self, path: str) -> Response:
        return self._soap.malformed_response() if self._soap.serves(path) else super().malformed_response(path)

    def server_fault_response(self, message: str, path: str) -> Response:
        if self._soap.serves(path):
            return self._soap.server_fault_response(message)
        return super().server_fault_response(message, path)

    def add_routes(self, app: FastAPI) -> None:
        from .erp_soap import JournalEntrySoap  # the SOAP face posts through this system

        self._soap = JournalEntrySoap(self)
        self._soap.add_routes(app)

        @app.post("/api/v1/journal-entries/bulk")
        async def bulk(request: Request) -> JSONResponse:
            try:
                body = json.loads(await request.body())
                if not isinstance(body, dict):
                    raise Malformed("body is not an object")
                items = body.get("JournalEntryCreateRequest")
                if not isinstance(items, list):
                    raise Malformed("JournalEntryCreateRequest must be a list")
                if len(items) > MAX_REQUESTS:
                    raise Malformed(f"at most {MAX_REQUESTS} JournalEntryCreateRequest per call, got {len(items)}")
                if "MessageHeader" in body and not isinstance(body["MessageHeader"], dict):
                    raise Malformed("MessageHeader must be an object")
                requests = [
                    parse_create_request(item, f"JournalEntryCreateRequest[{index}]")
                    for index, item in enumerate(items)
                ]
            except ValueError as exc:  # Malformed and JSONDecodeError
                return error(400, str(exc) if isinstance(exc, Malformed) else "body is not JSON")
            return JSONResponse({"JournalEntryCreateConfirmation": self.post_all(requests)})

        @app.post("/api/v1/journal-entries")
        async def single(request: Request) -> JSONResponse:
            try:
                requests = [parse_create_request(json.loads(await request.body()), "JournalEntryCreateRequest")]
            except ValueError as exc:
                return error(400, str(exc) if isinstance(exc, Malformed) else "body is not JSON")
            return JSONResponse(self.post_all(requests)[0])

        @app.get("/api/v1/journal-entries")
        async def journal_entries(request: Request) -> JSONResponse:
            params = request.query_params
            if "DocumentReferenceID" not in params and "page" in params:
                try:
                    page, size = ledger_window(params)
                except Malformed as exc:
                    return error(400, str(exc))
                first = params.get("AccountingDocumentFrom")
                if first is not None and not first.strip().isdigit():
                    return error(400, f"AccountingDocumentFrom must be a document number, got {first!r}")
                return JSONResponse(self.ledger_page(page, size, params.get("CompanyCode"), int(first) if first else None))
            reference = params.get("DocumentReferenceID")
            if not reference:
                return error(400, "DocumentReferenceID, or page for the ledger listing, is required")
            return JSONResponse({"results": self.documents_by_reference(reference)})

    def ledger_page(self, page: int, size: int, company: str | None = None, first: int | None = None) -> dict:
        """Posted documents in posting order (of one company code, and numbered from `first` on,
        if given), one page of them."""
        documents = self._documents if company is None else self._by_company.get(company, [])
        if first is not None:
            # Numbers only grow, in posting order: the documents from `first` on are a tail.
            documents = documents[bisect.bisect_left([int(d["AccountingDocument"]) for d in documents], first) :]
        start = (page - 1) * size
        return {
            "results": [_document(d) for d in documents[start : start + size]],
            "page": page,
            "size": size,
            "total": len(documents),
        }
