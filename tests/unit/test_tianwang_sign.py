"""`sign()`: X-Tianwang-Signature is `sha256=<hex HMAC-SHA256 of the raw body>` (CONTRACTS.md §1 Callback)."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.clients.tianwang import sign

# RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
RFC4231_HEX = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_known_vector():
    assert sign(b"what do ya want for nothing?", "Jefe") == "sha256=" + RFC4231_HEX


def test_signs_the_raw_utf8_body():
    body = json.dumps({"task_id": "T1", "status": "completed", "note": "完成"}, ensure_ascii=False).encode()
    expected = hmac.new("密钥-secret".encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert sign(body, "密钥-secret") == f"sha256={expected}"


def test_format_is_prefix_and_64_lowercase_hex():
    sig = sign(b"{}", "k")
    prefix, _, digest = sig.partition("=")
    assert prefix == "sha256"
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")


def test_different_secret_or_body_changes_the_signature():
    assert sign(b"{}", "a") != sign(b"{}", "b")
    assert sign(b'{"a":1}', "a") != sign(b'{"a": 1}', "a")


@settings(max_examples=50, deadline=None, database=None)
@given(body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=30))
def test_agrees_with_hmac_module(body, secret):
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert sign(body, secret) == expected
    assert hmac.compare_digest(sign(body, secret), expected)


@pytest.mark.parametrize("body", [b"", b"\x00\xff"])
def test_edge_bodies(body):
    assert sign(body, "s") == "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
