"""``make demo`` runs ``python -m services.demo``: it must finish, exit 0 and print its
summary for both styles."""

from __future__ import annotations

import os
import sys

import anyio


async def test_the_demo_runs_both_styles_and_exits_0(memory_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "BUS_URL"))}
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-m", "services.demo", "--orders", "40", "--url", memory_url],
            env={**env, "PYTHONPATH": os.getcwd()},
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()[-3000:]
    for style in ("choreography", "orchestration"):
        assert "40 orders in" in out and f"({style}):" in out
    assert out.count("not final      0") == 2
    assert out.count("stock adds up  yes") == 2
    assert out.count("dead letters   0") == 2
    assert "p50" in out and "p99" in out and "retries" in out
    assert out.rstrip().endswith("demo done")
