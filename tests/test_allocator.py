"""Freed memory is reused: large blocks stop costing page faults at every evaluation."""

import resource
import subprocess
import sys
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings are Linux-only")
def test_a_freed_block_is_reused_without_page_faults():
    """Before: each 64 MiB block is mapped anew (16,384 pages to fault in); after: freed ones are reused.

    In a fresh process, as `gatys stylize` starts."""
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_allocator import _faults_of_a_large_block as f\n"
        "from gatys.allocator import keep_freed_memory\n"
        "f(); default = f()\n"
        "assert keep_freed_memory()\n"
        "[f() for _ in range(20)]\n"  # glibc settles on reusing aligned blocks after a few rounds
        "kept = [f() for _ in range(3)]\n"
        "print(default, max(kept))\n"
    ) % str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    default, kept = map(int, out.split())
    assert default > 10_000  # 64 MiB / 4 KiB pages = 16,384 when glibc maps it anew
    assert kept < 1_000


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()
