"""The bulk-load allocator setting: large buffers reuse heap pages while it is on, and it always turns off."""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import pytest

from agentprovision import bulk_memory, warehouse
from agentprovision.bulk_memory import active_uses, large_buffers_in_heap
from agentprovision.store.db import make_engine, migrate

BUFFER = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB)
PAGES = BUFFER // resource.getpagesize()


def _faults_of_a_filled_buffer() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(BUFFER)  # allocated and zero-filled: every page touched
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(bulk_memory._GLIBC is None, reason="the setting only exists on glibc")
def test_large_buffers_reuse_heap_pages_only_while_active() -> None:
    with large_buffers_in_heap():
        _faults_of_a_filled_buffer()  # the heap grows once
        reused = _faults_of_a_filled_buffer()
    after = _faults_of_a_filled_buffer()
    assert reused < PAGES // 10, f"{reused} page faults for a buffer the heap already held ({PAGES} pages)"
    # Off again: a buffer this large is a fresh mapping, first-touched page by page.
    assert after > PAGES // 2, f"only {after} page faults for a fresh {PAGES}-page mapping"


def test_overlapping_uses_share_one_activation_and_errors_end_it() -> None:
    entered, release = threading.Event(), threading.Event()

    def other_load() -> None:
        with large_buffers_in_heap():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other_load)
    thread.start()
    assert entered.wait(10)
    with pytest.raises(RuntimeError), large_buffers_in_heap():
        assert active_uses() == 2
        raise RuntimeError("a load that fails")
    assert active_uses() == 1  # the other load is still on
    release.set()
    thread.join(10)
    assert active_uses() == 0


def test_a_warehouse_load_runs_under_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(store)
    seen: list[int] = []
    load_table = warehouse._load_table

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(active_uses())
        return load_table(*args, **kwargs)

    monkeypatch.setattr(warehouse, "_load_table", watched)
    warehouse.load_raw(store, tmp_path / "wh.duckdb")
    store.dispose()
    assert seen and set(seen) == {1}, f"active uses while loading each table: {seen}"
    assert active_uses() == 0
