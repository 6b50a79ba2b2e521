"""Every wait is bounded, and replies the hub cannot trust as data are refused by name.

Real servers on loopback: one that trickles its reply a byte at a time (each byte well inside
the read timeout, the whole far past the deadline), one that never answers, and ones that
answer JSON nested too deep or under a content type that is not JSON. Timing assertions are
one-sided and generous: they prove "bounded", not "fast".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pydantic
import pytest
from conftest import EAM_WSDL, loopback_server
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.connectors.deadline import Deadline, DeadlineExceeded
from hub.connectors.eam import EamClient
from hub.connectors.endpoint import SoapSpec
from hub.connectors.replies import JSON_MAX_DEPTH, UnexpectedReply, is_json_content_type, nested_deeper_than
from hub.connectors.rest import RestClient
from hub.connectors.retry import RetryPolicy, TransientError
from hub.settings import HubSettings, SystemEndpoint

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:plant:eam:maintenance:v1"
MAINTENANCE = SoapSpec(
    operation="GetAssetMaintenance", binding=f"{{{TNS}}}AssetMaintenanceBinding", batch_param="assetnum"
)
SOAP_OK = (
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}">'
    "<asset><assetnum>NJ-P-101</assetnum></asset></GetAssetMaintenanceResponse></soap:Body></soap:Envelope>"
).encode()
PERMITS_OK = b'{"items": [], "next_page_token": null}'
# Every byte arrives well inside the 10 s read timeout; the whole takes far past the 2 s deadline.
BYTE_EVERY_S = 0.5
DEADLINE_S = 2.0
BUDGET = RetryPolicy(attempts=5, initial_s=0.01, max_s=0.05, budget_s=3.0)


def nested(depth: int) -> bytes:
    return b'{"items": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def rest(url: str, system: str = "PTW", **kwargs: Any) -> RestClient:
    options: dict[str, Any] = {"connect_timeout_s": 5.0, "read_timeout_s": 10.0, "retry": BUDGET, **kwargs}
    return RestClient(system, SystemEndpoint(url=url), **options)


def eam(address: str, wsdl: str = str(EAM_WSDL), **kwargs: Any) -> EamClient:
    options: dict[str, Any] = {"connect_timeout_s": 5.0, "operation_timeout_s": 10.0, "retry": BUDGET, **kwargs}
    return EamClient(SystemEndpoint(url=address), wsdl, **options)


# -- servers -----------------------------------------------------------------------------------


@pytest.fixture
def trickling_server() -> Iterator[tuple[str, list[float]]]:
    """Answers GET with a JSON permit page (a WSDL under /wsdl) and POST with a SOAP envelope,
    each under a correct Content-Length but one byte every half second. Yields its URL and when
    each request began."""
    began: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def _trickle(self, body: bytes, content_type: str) -> None:
            began.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(BYTE_EVERY_S)
            except OSError:
                pass  # the client gave up and hung up

        def do_GET(self) -> None:
            if self.path.startswith("/wsdl"):
                self._trickle(EAM_WSDL.read_bytes(), "text/xml; charset=utf-8")
            else:
                self._trickle(PERMITS_OK, "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._trickle(SOAP_OK, "text/xml; charset=utf-8")

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, began


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts the request and says nothing for 30 s."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(30)

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url


class Replies:
    """What the `replies` server answers at each path, (body, content type), and the paths asked for."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: dict[str, tuple[bytes, str | None]] = {}
        self.served: list[str] = []


@pytest.fixture
def replies() -> Iterator[Replies]:
    """Answers GET and POST at a path with the body and content type set for it."""
    state = Replies("")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            state.served.append(path)
            body, content_type = state.answers[path]
            self.send_response(200)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as url:
        state.url = url
        yield state


# -- a total deadline per request ---------------------------------------------------------------


def test_trickling_rest_reply_is_cut_off_at_the_deadline_and_retried_within_the_budget(
    trickling_server: tuple[str, list[float]],
) -> None:
    url, began = trickling_server
    client = rest(url, deadline_s=DEADLINE_S)

    started = time.monotonic()
    expected = r"^PTW GET /api/v1/permits: no whole reply within the 2 s request deadline"
    with pytest.raises(DeadlineExceeded, match=expected):
        client.request("GET", "/api/v1/permits")
    elapsed = time.monotonic() - started

    # Each attempt stops at its 2 s deadline, not after the 19 s the body would take; the 3 s
    # budget counts those 2 s, so a second attempt starts but no third.
    assert elapsed < 8
    assert client.calls == 2 and len(began) == 2
    assert began[1] - began[0] >= DEADLINE_S - 0.1


def test_deadline_cut_off_is_transient_and_counts_toward_the_breaker(trickling_server: tuple[str, list[float]]) -> None:
    url, _ = trickling_server
    client = rest(url, deadline_s=0.5, retry=RetryPolicy(attempts=1))

    with pytest.raises(TransientError, match="0.5 s request deadline"):
        client.request("GET", "/api/v1/permits")

    assert client.breaker.failures_in_a_row == 1


def test_a_silent_server_is_given_up_on_at_the_deadline_not_the_read_timeout(silent_server: str) -> None:
    client = rest(silent_server, deadline_s=1.0, retry=RetryPolicy(attempts=1))

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"^PTW GET /x: no whole reply within the 1 s request deadline"):
        client.request("GET", "/x")

    assert time.monotonic() - started < 5  # the read timeout alone would have waited 10 s


def test_trickling_soap_reply_is_cut_off_at_the_deadline_and_retried_within_the_budget(
    trickling_server: tuple[str, list[float]],
) -> None:
    url, began = trickling_server
    client = eam(f"{url}/eam/soap", deadline_s=DEADLINE_S)

    started = time.monotonic()
    with pytest.raises(
        DeadlineExceeded, match=r"^EAM GetAssetMaintenance: no whole reply within the 2 s request deadline"
    ):
        client.call(MAINTENANCE, {"assetnum": ["NJ-P-101"]})
    elapsed = time.monotonic() - started

    assert elapsed < 8  # the envelope alone would take over two minutes
    assert client.calls == 2 and len(began) == 2


def test_trickling_wsdl_download_is_cut_off_at_the_deadline(trickling_server: tuple[str, list[float]]) -> None:
    url, _ = trickling_server
    client = eam(f"{url}/eam/soap", wsdl=f"{url}/wsdl?deadline", deadline_s=1.0, retry=RetryPolicy(attempts=1))

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"^EAM WSDL download: no whole reply within the 1 s request deadline"):
        client.call(MAINTENANCE, {"assetnum": ["NJ-P-101"]})

    assert time.monotonic() - started < 5


def test_a_reply_within_the_deadline_is_read_whole(replies: Replies) -> None:
    url = replies.url
    replies.answers["/api/v1/permits"] = (PERMITS_OK, "application/json")
    replies.answers["/eam/soap"] = (SOAP_OK, "text/xml; charset=utf-8")

    assert rest(url, deadline_s=DEADLINE_S).request("GET", "/api/v1/permits") == {"items": [], "next_page_token": None}
    reply = eam(f"{url}/eam/soap", deadline_s=DEADLINE_S).call(MAINTENANCE, {"assetnum": ["NJ-P-101"]})
    assert reply["asset"] == [{"assetnum": "NJ-P-101"}]


def test_the_retry_budget_counts_the_time_attempts_take() -> None:
    attempts: list[float] = []

    def slow_failure() -> None:
        attempts.append(time.monotonic())
        time.sleep(0.4)
        raise TransientError("slow and failing")

    policy = RetryPolicy(attempts=20, initial_s=0.01, max_s=0.01, budget_s=1.0)
    started = time.monotonic()
    with pytest.raises(TransientError):
        policy.call(slow_failure)

    # Counting only the 0.01 s waits, all 20 attempts would fit; counting the attempts, three do.
    assert len(attempts) == 3
    assert all(at - started < 1.0 for at in attempts)


def test_request_deadline_setting() -> None:
    assert HubSettings().request_deadline_s == 60
    assert HubSettings(request_deadline_s=2.5).request_deadline_s == 2.5
    with pytest.raises(pydantic.ValidationError, match="request_deadline_s"):
        HubSettings(request_deadline_s=0)
    with pytest.raises(ValueError, match="positive"):
        Deadline("PTW", 0)


def test_request_deadline_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_REQUEST_DEADLINE_S", "7.5")
    assert HubSettings().request_deadline_s == 7.5


# -- JSON nested too deep -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "method", "path"),
    [("PTW", "GET", "/api/v1/permits"), ("MES", "POST", "/api/v1/material-parameters/query")],
)
@pytest.mark.parametrize("depth", [JSON_MAX_DEPTH + 1, 200_000])
def test_json_nested_too_deep_is_refused_by_name(
    replies: Replies, system: str, method: str, path: str, depth: int
) -> None:
    replies.answers[path] = (nested(depth), "application/json")
    client = rest(replies.url, system)

    expected = rf"^{system} {method} {path}: reply is JSON nested deeper than 64 levels"
    with pytest.raises(UnexpectedReply, match=expected):
        client.request(method, path, **({"json": {"MaterialName": ["X"]}} if method == "POST" else {}))

    assert client.calls == 1 and replies.served == [path]  # the same reply would come again
    assert client.breaker.state == "closed"


def test_json_at_the_depth_limit_is_read(replies: Replies) -> None:
    replies.answers["/deep"] = (nested(JSON_MAX_DEPTH), "application/json")
    assert _depth(rest(replies.url).request("GET", "/deep")) == JSON_MAX_DEPTH


def test_brackets_inside_strings_do_not_count_as_nesting(replies: Replies) -> None:
    text = "[" * 500 + '\\"{' * 100 + "\\\\"
    body = json.dumps({"items": [{"note": text, "other": "]" * 300}]}).encode()
    replies.answers["/strings"] = (body, "application/json")
    assert rest(replies.url).request("GET", "/strings")["items"][0]["note"] == text


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_LEAVES = st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, limit=st.integers(min_value=0, max_value=8), ensure_ascii=st.booleans())
def test_nesting_scan_agrees_with_the_parsed_depth(value: Any, limit: int, ensure_ascii: bool) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    assert nested_deeper_than(body, limit) == (_depth(value) > limit)


# -- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/html; charset=utf-8", "text/html"),
        ("text/plain", "text/plain"),
        ("application/xml", "application/xml"),
        (None, "without a content type"),
        ("not a media type <script>", "of an unreadable content type"),
    ],
)
def test_json_under_another_content_type_is_refused_by_name(
    replies: Replies, content_type: str | None, shown: str
) -> None:
    replies.answers["/api/v1/permits"] = (PERMITS_OK, content_type)
    client = rest(replies.url, "PTW")

    expected = (
        rf"^PTW GET /api/v1/permits: reply is {shown}, "
        r"but JSON was expected \(application/json or application/\*\+json\)"
    )
    with pytest.raises(UnexpectedReply, match=expected):
        client.request("GET", "/api/v1/permits")

    assert client.calls == 1 and replies.served == ["/api/v1/permits"]
    assert client.breaker.state == "closed"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
        "application/vnd.api+json; v=2",
    ],
)
def test_json_content_types_are_accepted(replies: Replies, content_type: str) -> None:
    replies.answers["/api/v1/permits"] = (PERMITS_OK, content_type)
    assert rest(replies.url).request("GET", "/api/v1/permits")["items"] == []


def test_content_type_matching() -> None:
    assert not is_json_content_type("application/+json")
    assert not is_json_content_type("application/jsonp")
    assert not is_json_content_type("text/json-ish")
    assert not is_json_content_type("")
