"""ERP, SAP's SOAP face: Journal Entry - Post (Synchronous), `journalentrycreaterequestconfi`.

The REST face (`erp.py`) takes one GL account and cost center per entry. SAP's service takes a
real journal entry: at least two `Item`s that balance, the expense debited (`S`, positive, with
its cost center) and a clearing account credited (`H`, negative), amounts carrying their
currency in the `currencyCode` attribute. Both faces post into the one ledger of `ErpSystem`,
with its duplicate window on the entry's `MessageHeader/UUID`, so a repeat returns the first
confirmation and the ledger holds the document once, whichever face it came through.

`JournalEntryByReferenceQuery_In` (in the same WSDL) answers which documents carry a
`DocumentReferenceID`: the SOAP client's way to ask before it sends an unclear entry again, as
the REST face's `GET /api/v1/journal-entries?DocumentReferenceID=` is.
"""

from __future__ import annotations

import uuid as uuids
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree

from .eam import MALFORMED_XML, SOAP_ENV, WSDL_SOAP, XML_CONTENT_TYPE, SoapClientError, soap_fault, soap_payload
from .xmlsafe import hardened_parser

if TYPE_CHECKING:
    from .erp import ErpSystem

WSDL_PATH = Path(__file__).with_name("erp_journal_entry.wsdl")
SFIN = "http://sap.com/xi/SAPSCORE/SFIN"
SRT_ROOT = "/sap/bc/srt/scs_ext/sap"
POST_PATH = f"{SRT_ROOT}/journalentrycreaterequestconfi"
QUERY_PATH = f"{SRT_ROOT}/journalentrybyreferencequery"
MAX_REQUESTS = 200
# The account every entry's credit may post to besides the company code's own GL accounts: the
# plant's clearing account for safety costs (not in erp/company.json, which lists expense accounts).
CLEARING_ACCOUNT = "21819901"
NO_DOCUMENT = {"AccountingDocument": "0000000000", "FiscalYear": "0000"}  # what SAP confirms when nothing posted
POSTED_TYPE_ID = "605(RW)"


def _text(parent: etree._Element, name: str, where: str, required: bool = True) -> str | None:
    element = parent.find(name)
    value = (element.text or "").strip() if element is not None else ""
    if required and not value:
        raise SoapClientError(f"{where}/{name} is missing")
    return value or None


def _header(parent: etree._Element, where: str) -> dict:
    header = parent.find("MessageHeader")
    if header is None:
        raise SoapClientError(f"{where}/MessageHeader is missing")
    values = {name: _text(header, name, f"{where}/MessageHeader") for name in ("UUID", "CreationDateTime")}
    values["ID"] = _text(header, "ID", f"{where}/MessageHeader", required=False)
    try:
        datetime.fromisoformat(values["CreationDateTime"].replace("Z", "+00:00"))
    except ValueError:
        raise SoapClientError(f"{where}/MessageHeader/CreationDateTime is not an xs:dateTime") from None
    return values


def _item(element: etree._Element, where: str) -> dict:
    amount = element.find("AmountInTransactionCurrency")
    if amount is None or not (amount.get("currencyCode") or "").strip():
        raise SoapClientError(f"{where}/AmountInTransactionCurrency with a currencyCode is missing")
    try:
        value = Decimal((amount.text or "").strip())
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise SoapClientError(f"{where}/AmountInTransactionCurrency is not a decimal: {amount.text!r}") from None
    assignment = element.find("AccountAssignment")
    return {
        "GLAccount": _text(element, "GLAccount", where),
        "Amount": value,
        "Currency": amount.get("currencyCode").strip(),
        "DebitCreditCode": _text(element, "DebitCreditCode", where),
        "CostCenter": _text(assignment, "CostCenter", f"{where}/AccountAssignment", False) if assignment is not None else None,
    }


def parse_entry(element: etree._Element, where: str) -> tuple[str, dict]:
    """(UUID, entry) of one JournalEntryCreateRequest: the ledger's fields from its first debit
    item (GL account, cost center) and its debit total, and every item under `Items`."""
    header = _header(element, where)
    journal = element.find("JournalEntry")
    if journal is None:
        raise SoapClientError(f"{where}/JournalEntry is missing")
    fields = {name: _text(journal, name, f"{where}/JournalEntry") for name in ("CompanyCode", "DocumentReferenceID", "PostingDate")}
    try:
        date.fromisoformat(fields["PostingDate"])
    except ValueError:
        raise SoapClientError(f"{where}/JournalEntry/PostingDate is not an xs:date: {fields['PostingDate']!r}") from None
    items = [_item(item, f"{where}/JournalEntry/Item[{n + 1}]") for n, item in enumerate(journal.findall("Item"))]
    debits = [item for item in items if item["DebitCreditCode"] == "S"]
    first = debits[0] if debits else (items[0] if items else {})
    entry = {
        **fields,
        "DocumentHeaderText": _text(journal, "DocumentHeaderText", where, required=False),
        "TransactionCurrency": first.get("Currency", ""),
        "GLAccount": first.get("GLAccount", ""),
        "CostCenter": first.get("CostCenter") or "",
        "Amount": sum((item["Amount"] for item in debits), Decimal(0)),
        "Items": [{**item, "Amount": str(item["Amount"])} for item in items],
    }
    return header["UUID"], entry


def parse_bulk(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """(bulk MessageHeader, [(UUID, entry), ...]) of a JournalEntryBulkCreateRequest."""
    request = soap_payload(body, f"{{{SFIN}}}JournalEntryBulkCreateRequest")
    header = _header(request, "JournalEntryBulkCreateRequest")
    entries = request.findall("JournalEntryCreateRequest")
    if not 1 <= len(entries) <= MAX_REQUESTS:
        raise SoapClientError(f"1 to {MAX_REQUESTS} JournalEntryCreateRequest per message, got {len(entries)}")
    return header, [parse_entry(e, f"JournalEntryCreateRequest[{n + 1}]") for n, e in enumerate(entries)]


def _sub(parent: etree._Element, name: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, name, attributes)
    if text is not None:
        element.text = text
    return element


def _log(parent: etree._Element, severity: str, items: list[dict]) -> None:
    log = _sub(parent, "Log")
    _sub(log, "MaximumLogItemSeverityCode", severity)
    for item in items:
        entry = _sub(log, "Item")
        for name in ("TypeID", "SeverityCode", "Note"):
            _sub(entry, name, item[name])


def _message_header(parent: etree._Element, reference_uuid: str, reference_id: str | None = None) -> None:
    """A confirmation's header: its own UUID (derived from what it answers, so a repeat is the
    same confirmation), and the request it answers."""
    header = _sub(parent, "MessageHeader")
    _sub(header, "UUID", str(uuids.uuid5(uuids.NAMESPACE_URL, f"confirmation:{reference_uuid}")))
    if reference_id is not None:
        _sub(header, "ReferenceID", reference_id)
    _sub(header, "ReferenceUUID", reference_uuid)
    _sub(header, "CreationDateTime", datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"))


def _envelope(tag: str) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    return envelope, etree.SubElement(body, f"{{{SFIN}}}{tag}", nsmap={"n0": SFIN})


class JournalEntrySoap:
    """The SOAP routes of one `ErpSystem`: posting in bulk, asking by reference, the WSDL."""

    def __init__(self, erp: ErpSystem):
        self.erp = erp

    @staticmethod
    def serves(path: str) -> bool:
        return path.startswith(SRT_ROOT + "/")

    @staticmethod
    def malformed_response() -> Response:
        return Response(MALFORMED_XML, 200, media_type=XML_CONTENT_TYPE)

    @staticmethod
    def server_fault_response(message: str) -> Response:
        return soap_fault(message, "soap:Server")

    def problems(self, entry: dict) -> list[tuple[str, str]]:
        """Why SAP would not post this entry: items that do not balance or carry the wrong sign,
        mixed currencies, and master data the company code lacks."""
        items = entry["Items"]
        if len(items) < 2:
            return [("ITEMS_TOO_FEW", f"A journal entry needs at least two items, got {len(items)}")]
        problems: list[tuple[str, str]] = []
        for n, item in enumerate(items, 1):
            amount, code = Decimal(item["Amount"]), item["DebitCreditCode"]
            if (code, amount > 0) not in {("S", True), ("H", False)} or amount == 0:
                problems.append(("DEBIT_CREDIT_SIGN", f"Item {n}: {code} needs a {'positive' if code == 'S' else 'negative'} amount, got {amount}"))
            if code == "S":
                problems += self.erp.master_data_problems(entry["CompanyCode"], item["CostCenter"] or "", item["GLAccount"])
            elif item["GLAccount"] != CLEARING_ACCOUNT:
                problems += self.erp.master_data_problems(entry["CompanyCode"], None, item["GLAccount"])
        currencies = sorted({item["Currency"] for item in items})
        if len(currencies) > 1:
            problems.append(("CURRENCY_MIXED", f"Items are in more than one currency: {', '.join(currencies)}"))
        balance = sum(Decimal(item["Amount"]) for item in items)
        if balance != 0:
            problems.append(("702(F5)", f"Balance in transaction currency is {balance} {currencies[0]}, not zero"))
        return list(dict.fromkeys(problems))

    def post(self, body: bytes) -> bytes:
        header, requests = parse_bulk(body)
        confirmations = self.erp.post_all(requests, [self.problems(entry) for _, entry in requests])
        envelope, answer = _envelope("JournalEntryBulkCreateConfirmation")
        _message_header(answer, header["UUID"], header["ID"])
        worst = "1"
        for (uuid, _), confirmation in zip(requests, confirmations):
            worst = max(worst, self._confirmation(answer, uuid, confirmation))
        _log(answer, worst, [])
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    @staticmethod
    def _confirmation(parent: etree._Element, uuid: str, confirmation: dict) -> str:
        """One entry's confirmation from the ledger's record of it (the first one, for a repeat)."""
        element = _sub(parent, "JournalEntryCreateConfirmation")
        _message_header(element, uuid)
        document = {**NO_DOCUMENT, **confirmation["JournalEntry"]}
        inner = _sub(element, "JournalEntryCreateConfirmation")
        for name in ("AccountingDocument", "CompanyCode", "FiscalYear"):
            _sub(inner, name, document.get(name, ""))
        severity = confirmation["Log"]["MaximumLogItemSeverityCode"]
        items = list(confirmation["Log"]["Item"])
        if "AccountingDocument" in confirmation["JournalEntry"]:
            number = document["AccountingDocument"] + document["CompanyCode"] + document["FiscalYear"]
            items.append({"TypeID": POSTED_TYPE_ID, "SeverityCode": "1", "Note": f"Document posted successfully: BKPFF {number}"})
        _log(element, severity, items)
        return severity

    def query(self, body: bytes) -> bytes:
        request = soap_payload(body, f"{{{SFIN}}}JournalEntryByReferenceQueryRequest")
        reference = _text(request, "DocumentReferenceID", "JournalEntryByReferenceQueryRequest")
        company = _text(request, "CompanyCode", "JournalEntryByReferenceQueryRequest", required=False)
        envelope, answer = _envelope("JournalEntryByReferenceQueryResponse")
        for document in self.erp.documents_by_reference(reference):
            if company is not None and document["CompanyCode"] != company:
                continue
            entry = _sub(answer, "JournalEntry")
            for name in ("AccountingDocument", "CompanyCode", "FiscalYear", "DocumentReferenceID", "MessageUUID",
                         "PostingDate", "GLAccount", "CostCenter"):
                _sub(entry, name, document[name])
            _sub(entry, "AmountInTransactionCurrency", document["Amount"], currencyCode=document["TransactionCurrency"])
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def wsdl_for(self, root: str) -> bytes:
        """The WSDL with each service's address on this server."""
        tree = etree.parse(str(WSDL_PATH), hardened_parser())
        for element in tree.iter(f"{{{WSDL_SOAP}}}address"):
            path = element.get("location").split("/", 3)[-1]
            element.set("location", f"{root}/{path}")
        return etree.tostring(tree, xml_declaration=True, encoding="utf-8")

    def add_routes(self, app: FastAPI) -> None:
        for path, handle in ((POST_PATH, self.post), (QUERY_PATH, self.query)):
            self._add_route(app, path, handle)

    def _add_route(self, app: FastAPI, path: str, handle) -> None:
        @app.post(path)
        async def serve(request: Request) -> Response:
            try:
                return Response(handle(await request.body()), media_type=XML_CONTENT_TYPE)
            except SoapClientError as exc:
                return soap_fault(str(exc))

        @app.get(path)
        async def wsdl(request: Request) -> Response:
            if "wsdl" not in {key.lower() for key in request.query_params}:
                return Response("POST SOAP 1.1 requests here; the WSDL is at ?wsdl\n", 405, media_type="text/plain")
            return Response(self.wsdl_for(str(request.base_url).rstrip("/")), media_type=XML_CONTENT_TYPE)
