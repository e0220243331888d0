"""Freed memory is reused: large blocks stop costing page faults at every evaluation."""

import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from gatys.allocator import keep_freed_memory


def _faults_of_a_large_block() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(64 * 2**20, dtype=torch.uint8)  # 64 MiB, above glibc's largest mmap threshold
    block.fill_(1)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _faults_in_a_thread(rounds: int) -> list[int]:
    """The faults of each round of :func:`_faults_of_a_large_block`, run in one thread (not the main one)."""
    faults = []
    worker = threading.Thread(target=lambda: faults.extend(_faults_of_a_large_block() for _ in range(rounds)))
    worker.start()
    worker.join()
    return faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings are Linux-only")
def test_a_freed_block_is_reused_without_page_faults():
    """Before: each 64 MiB block is mapped anew (16,384 pages to fault in); after: freed ones are reused.

    In a fresh process, as `gatys stylize` starts."""
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_allocator import _faults_of_a_large_block as f, _faults_in_a_thread as in_thread\n"
        "from gatys.allocator import keep_freed_memory\n"
        "f(); default = f()\n"
        "assert keep_freed_memory()\n"
        "[f() for _ in range(20)]\n"  # glibc settles on reusing aligned blocks after a few rounds
        "kept = [f() for _ in range(3)]\n"
        "print(default, max(kept), max(in_thread(20)[-3:]))\n"
    ) % str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    default, kept, kept_in_thread = map(int, out.split())
    assert default > 10_000  # 64 MiB / 4 KiB pages = 16,384 when glibc maps it anew
    assert kept < 1_000
    # a thread's own arena would map and trim it each round (8,192 faults here); threads share the main one
    assert kept_in_thread < 1_000


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()
