"""Message ids: unique within a process and across a fork."""

from __future__ import annotations

import os

from bus.message import new_id


def test_ids_are_unique_and_a_forked_child_has_its_own_prefix() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_id = new_id()
    assert len(child_id) == 32
    assert child_id[:20] != parent_id[:20], "a forked child reused its parent's prefix"
