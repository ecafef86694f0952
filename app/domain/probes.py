"""How a message looks keywords up in the index, and the bounds of that work (pure).

A task's keywords are filed under ("kw", word) (`app.domain.triggers.index_keys`); a message finds them
by probing the index with its own substrings of every keyword length the index holds. The work per
message is bounded here: a keyword is a short phrase (好的, 已付款, "paid"), and 32 normalised characters
hold any of them and an English phrase of six words; and only a message's first 4,096 characters are
probed (a chat message longer than that is not a customer saying 好的, and its probes would grow with
it). So a message costs at most 4,096 × 32 probes of at most 32 characters each.
"""
from __future__ import annotations

from typing import Iterable, Iterator

MAX_KEYWORD_CHARS = 32
MAX_PROBED_CHARS = 4096


def substrings(text: str, lengths: Iterable[int]) -> Iterator[str]:
    """Every substring of `text`'s first MAX_PROBED_CHARS characters whose length is one of `lengths`
    (1 to MAX_KEYWORD_CHARS): the keyword-index probes, generated lazily, at most
    MAX_PROBED_CHARS × MAX_KEYWORD_CHARS of them."""
    text = text[:MAX_PROBED_CHARS]
    n = len(text)
    for length in sorted({int(l) for l in lengths}):
        if length <= 0 or length > min(n, MAX_KEYWORD_CHARS):
            continue
        for start in range(n - length + 1):
            yield text[start:start + length]
