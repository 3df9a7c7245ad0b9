"""Continuation tokens: a reader's ``Cursor`` as an opaque, URL-safe string, and back. Pure.

A token is ``v1.`` + base64url(JSON). It names the query it belongs to and the validated
parameters that query ran with, so a token cannot be replayed against another question (another
night, another user) and is refused with a 400 if tampered with. It is not signed: it can only
move the cursor *within* a filter built from the request's own validated parameters (the service
token is passed to the SDK as its continuation; a keyset position is a parameter), so a forged one
can skip rows of that answer but never reach rows outside it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from shared.adapters.history_reader import Cursor
from shared.adapters.table_schema import SHARDS, STATE_PREFIX
from shared.params import BadParameter

_VERSION = "v1."
MAX_TOKEN_LENGTH = 4096
_SHAPE = re.compile(r"v1\.[A-Za-z0-9_-]{1,4096}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SERVICE_KEYS = frozenset({"PartitionKey", "RowKey"})


class BadToken(BadParameter):
    """A continuation token that is malformed, tampered with, or from another query."""


def encode(query: str, binding: Mapping[str, str], cursor: Cursor) -> str:
    body: dict[str, Any] = {"q": query, "b": dict(binding)}
    if cursor.token:
        body["t"] = {k: v for k, v in cursor.token.items() if k in _SERVICE_KEYS}
    if cursor.shard:
        body["s"] = cursor.shard
    if cursor.after is not None:
        body["a"] = cursor.after
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()
    return _VERSION + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise BadToken("the continuation token is not valid")
    return value


def decode(token: str, query: str, binding: Mapping[str, str]) -> Cursor:
    """The cursor in ``token``; BadToken unless it was made by ``encode`` for this very query."""
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
        raise BadToken("the continuation token is not valid")
    payload = token[len(_VERSION) :]
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise BadToken("the continuation token is not valid") from None
    if not isinstance(body, dict) or not set(body) <= {"q", "b", "t", "s", "a"}:
        raise BadToken("the continuation token is not valid")
    if body.get("q") != query or body.get("b") != dict(binding):
        raise BadToken("the continuation token belongs to another query: start again without it")

    service: dict[str, str] | None = None
    if "t" in body:
        t = body["t"]
        if not isinstance(t, dict) or not t or not set(t) <= _SERVICE_KEYS:
            raise BadToken("the continuation token is not valid")
        service = {k: _text(v, 1024) for k, v in t.items()}
    shard = body.get("s", 0)
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < len(SHARDS):
        raise BadToken("the continuation token is not valid")
    after = body.get("a")
    if after is not None and not _text(after, 300).startswith(STATE_PREFIX):
        raise BadToken("the continuation token is not valid")
    if service is None and after is None:
        raise BadToken("the continuation token is not valid")
    return Cursor(token=service, shard=shard, after=after)
