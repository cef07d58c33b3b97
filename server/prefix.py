"""Cache-aware balancing: send a request to the engine most likely to hold its prompt's
prefix in vLLM's prefix cache, unless that engine is much busier than another.

vLLM keeps the KV cache of prompts it has read (automatic prefix caching, on by default)
and reuses it for a later prompt that begins the same way: the shared part is not
computed again, so its time to first token falls with the part's length. Least
outstanding requests spreads a conversation's turns, or the users of one long system
prompt, over every engine, so each engine must hold every prefix: once the prefixes of the
traffic outgrow one engine's cache, each evicts what the next request needs. Sending each
prefix to the engine that read it last partitions them instead, and the engines' caches
add up.

The router has no tokenizer and no view of the engines' caches, so it tracks what it sent
where: a prompt's text is cut into blocks of `BLOCK_CHARS` characters, each block's hash
chained to the one before (`blocks`), so that a block's hash stands for the whole prefix
up to its end. Each engine keeps the hashes of the blocks last sent to it, least recently
used out first beyond `capacity` (`PrefixIndex`), an estimate of what its cache holds. A
request goes to the engine whose index holds the longest run of its first blocks, among
the engines within `slack` outstanding requests of the least loaded one (the load guard:
one hot prefix cannot pile every request onto one engine); ties, and requests that match
nowhere, go to the least loaded (`choose`).

The estimate errs both ways: an engine's cache may have evicted a block the index still
holds (a longer prefix than it has is assumed: the request only loses the affinity), and
text blocks do not fall on token boundaries (the match is off by less than a block).
Either costs a prefill, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, TypeVar

BLOCK_CHARS = 256  # about 64 tokens of English text (four characters a token)
MAX_BLOCKS = 256  # the first 64 KiB of a prompt: longer prefixes are matched that far
# Blocks an engine is assumed to hold: ~65,000 tokens, what an A10G's 24 GB keeps for an
# 8B model's cache after its weights (LLMFLEET_PREFIX_CACHE_BLOCKS for others).
DEFAULT_CAPACITY = 1024


def blocks(text: str, block_chars: int = BLOCK_CHARS,
           max_blocks: int = MAX_BLOCKS) -> tuple[int, ...]:
    """The chained hashes of `text`'s whole blocks (a partial last block is left out: the
    engine caches whole blocks too), at most `max_blocks`."""
    hashes: list[int] = []
    previous = 0
    whole = min(len(text) // block_chars, max_blocks)
    for i in range(whole):
        previous = hash((previous, text[i * block_chars:(i + 1) * block_chars]))
        hashes.append(previous)
    return tuple(hashes)


class PrefixIndex:
    """The block hashes last sent to one engine, least recently used out first."""

    __slots__ = ("_capacity", "_seen")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def matched(self, hashes: Sequence[int]) -> int:
        """How many of `hashes`' first blocks it holds, in a row."""
        count = 0
        for h in hashes:
            if h not in self._seen:
                break
            count += 1
        return count

    def record(self, hashes: Sequence[int]) -> None:
        """`hashes` were sent to the engine: now its most recent, the first block last, so
        that a prefix loses its tail before its head (as vLLM frees a prompt's last blocks
        first): a match must start at the first block."""
        seen = self._seen
        for h in reversed(hashes):
            seen[h] = None
            seen.move_to_end(h)
        while len(seen) > self._capacity:
            seen.popitem(last=False)


class Candidate(Protocol):
    @property
    def outstanding(self) -> int: ...
    @property
    def prefixes(self) -> PrefixIndex: ...


C = TypeVar("C", bound=Candidate)


def choose(candidates: Sequence[C], hashes: Sequence[int], slack: int) -> tuple[C, int]:
    """The candidate for a prompt of `hashes`, and how many blocks it matched: the longest
    match among those within `slack` requests of the least loaded, then the least loaded.
    `candidates` must not be empty; their order breaks the last ties."""
    least = min(c.outstanding for c in candidates)
    best, best_match = candidates[0], -1
    for candidate in candidates:
        if candidate.outstanding > least + slack:
            continue
        match = candidate.prefixes.matched(hashes) if hashes else 0
        if match > best_match or (match == best_match
                                  and candidate.outstanding < best.outstanding):
            best, best_match = candidate, match
    return best, best_match
