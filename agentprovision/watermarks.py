"""Exactly-once reading of an append-only stream by `seq`, when seqs can commit out of order.

On PostgreSQL a sequence hands out values when rows are inserted, not when they commit: a
transaction holding seq 41 can commit after another has committed seq 42. A loader that reads 42
and moves its watermark to 42 would never see 41. On SQLite writers are serialised, so this does
not happen there, but the same code runs on both.

The fix: a watermark plus the gaps below it. Every seq between the old watermark and the newest
seq read that was not in the read is remembered as a gap with the time it was first noticed; the
next load reads rows past the watermark *and* rows in open gaps. A gap is closed when its row
arrives (loaded once, like any other) or, after `GAP_GRACE`, given up: rolled-back transactions
and PostgreSQL's sequence caching leave seqs that never commit, and no ops-store transaction that
writes events or audit records stays open anywhere near that long.

The loader stores the watermark and the open gaps in the same warehouse transaction as the rows,
so a load that fails or is repeated neither duplicates nor skips a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

GAP_GRACE = timedelta(minutes=10)
# A jump this large is not in-flight transactions (sequence cache loss after a crash, a bulk
# rollback): its seqs are not tracked one by one, so a pathological jump cannot bloat the state.
MAX_TRACKED_GAP = 10_000


@dataclass
class Advance:
    watermark: int
    gaps: dict[int, datetime]  # still open: seq -> when first noticed
    filled: list[int] = field(default_factory=list)  # earlier gaps whose rows arrived in this read
    abandoned: list[int] = field(default_factory=list)  # gaps given up after the grace period


def advance(
    watermark: int,
    seqs_read: Iterable[int],
    gaps: Mapping[int, datetime],
    now: datetime,
    grace: timedelta = GAP_GRACE,
) -> Advance:
    """The new watermark and open gaps after reading `seqs_read` (rows past `watermark` or in `gaps`)."""
    seen = set(seqs_read)
    newest = max((s for s in seen if s > watermark), default=watermark)
    result = Advance(newest, {})
    for seq, noticed in gaps.items():
        if seq in seen:
            result.filled.append(seq)
        elif now - noticed >= grace:
            result.abandoned.append(seq)
        else:
            result.gaps[seq] = noticed
    if newest - watermark - 1 <= MAX_TRACKED_GAP:
        for seq in range(watermark + 1, newest):
            if seq not in seen:
                result.gaps[seq] = now
    result.filled.sort()
    result.abandoned.sort()
    return result
