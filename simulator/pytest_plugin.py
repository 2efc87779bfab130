"""pytest fixtures for testing calling flows against the simulator: installed with the package.

    def test_support_line(sim, bot):
        call = sim.dial(from_phone="+14255550100", to=bot)
        call.expect_prompt("welcome")
        call.press("2")
        call.expect_transfer(to="+14255550111")

`sim` is a running `simulator.harness.Simulation` (virtual clock, ephemeral loopback ports) with the
project's `function_app.py` on the local host; `bot` is how callers reach it. Override the
`sim_settings` fixture to give the bot settings (a routing policy, a default flow...), and
`sim_options` for anything else `Simulation` takes. `--sim-transcript` prints every call's transcript.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the harness is imported when a test asks for it, not whenever pytest starts
    from simulator.harness import BotHandle, Simulation


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("teams-calling simulator")
    group.addoption("--sim-transcript", action="store_true", default=False,
                    help="print the transcript of every simulated call after each test")


@pytest.fixture
def sim_settings() -> Mapping[str, str]:
    """Bot settings (environment variable names, as in docs/configuration.md) for the simulated bot."""
    return {}


@pytest.fixture
def sim_options() -> Mapping[str, Any]:
    """Extra keyword arguments for `Simulation` (e.g. `{"real_time": True}`)."""
    return {}


@pytest.fixture
def sim(request: pytest.FixtureRequest, sim_settings: Mapping[str, str],
        sim_options: Mapping[str, Any]) -> Iterator[Simulation]:
    from simulator.harness import Simulation

    simulation = Simulation(settings=dict(sim_settings), **dict(sim_options))
    with simulation:
        yield simulation
        if request.config.getoption("--sim-transcript"):
            print("\n" + simulation.transcript())


@pytest.fixture
def bot(sim: Simulation) -> BotHandle:
    return sim.bot
