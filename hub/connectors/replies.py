"""JSON replies read with care: the content type must say JSON, and nesting is limited.

A proxy's login page or a web server's error page can arrive as a 200; parsing it as data
would only give a confusing "not JSON" later, so a reply whose `Content-Type` is not JSON
is refused naming what came instead. A reply nested deeper than the limit is refused before
it is parsed: deep nesting is no record shape any vendor sends, and left alone it ends in a
`RecursionError` somewhere in the parser or in the code that walks the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from hub.connectors.retry import TransientError, VendorRejected

JSON_MAX_DEPTH = 64

# Everything but brackets and quotes is dropped before nesting is measured, and objects count
# as arrays: only how deep they go matters.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_AS_ARRAYS = bytes.maketrans(b"{}", b"[]")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,60}/[A-Za-z0-9!#$&^_.+-]{1,60}$")


class UnexpectedReply(VendorRejected):
    """A reply the hub refuses to read as data; the same request would get it again."""

    def __init__(self, system: str, status: int, where: str, problem: str):
        super().__init__(system, status, problem, message=f"{where}: {problem}; refused")


def is_json_content_type(value: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, parameters (charset) allowed."""
    media = (value or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in `body` nest more than `limit` levels deep.

    Brackets inside strings do not count. Every step is a bytes operation (no loop per byte):
    drop escaped characters, then every string, then remove the innermost pairs of brackets
    one level at a time. A body with no more than `limit` opening brackets cannot be too deep,
    which settles most small replies at once.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # An escaped backslash first, so that a quote after it still ends its string.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(_AS_ARRAYS, _NOT_STRUCTURE)
    brackets = b"".join(structure.split(b'"')[::2])  # even pieces lie outside strings
    too_deep = b"[" * (limit + 1)
    for _ in range(limit + 1):
        if too_deep in brackets:
            return True
        inner = brackets.replace(b"[]", b"")  # innermost pairs: one level less
        if len(inner) == len(brackets):
            return False  # nothing left to nest (unbalanced leftovers are the parser's to refuse)
        brackets = inner
    return True  # limit + 1 levels removed


def parse_json_reply(
    system: str, where: str, status: int, headers: Mapping[str, str], body: bytes, max_depth: int = JSON_MAX_DEPTH
) -> Any:
    """The reply's JSON value, or an error naming the system and what was wrong with it."""
    content_type = headers.get("content-type")
    if not is_json_content_type(content_type):
        raise UnexpectedReply(
            system,
            status,
            where,
            f"reply is {_shown(content_type)}, but JSON was expected (application/json or application/*+json)",
        )
    if nested_deeper_than(body, max_depth):
        raise UnexpectedReply(system, status, where, f"reply is JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except ValueError:
        # A cut-off or garbled body is worth another try; the next answer may be whole.
        raise TransientError(f"{where}: reply is not JSON") from None
    except RecursionError:  # an unbalanced body the scan could not measure
        raise UnexpectedReply(system, status, where, f"reply is JSON nested deeper than {max_depth} levels") from None


def _shown(content_type: str | None) -> str:
    """The media type as sent, when it is one; a header is never echoed whole into an error."""
    media = (content_type or "").split(";", 1)[0].strip()
    if not media:
        return "without a content type"
    return media if _MEDIA_TYPE.match(media) else "of an unreadable content type"
