"""Waiting for a local-host orchestration to finish, on the virtual clock: shared by the devhost tests."""

from __future__ import annotations

from typing import Any

from devhost.host import DevHost
from simulator.clock import VirtualClock

TERMINAL = ("Completed", "Failed", "Terminated")


async def finished(clock: VirtualClock, host: DevHost, instance_id: str, within: float = 60.0) -> dict[str, Any]:
    """The instance's status once it is Completed, Failed or Terminated (simulated time moves meanwhile)."""
    await clock.run_until(lambda: (host.status(instance_id) or {}).get("runtimeStatus") in TERMINAL, within=within)
    status = host.status(instance_id)
    assert status is not None
    return status
