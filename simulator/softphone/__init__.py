"""The browser softphone: a page that dials the bot through the simulator, and the small JSON API behind it.

`python -m simulator serve` runs it (simulator/serve.py); `routes` mounts it on any simulator's server:
`Simulation(sim_routes=softphone.routes(default_from="+14255550123"))`. The page (static/) is plain HTML, CSS and
JavaScript with no build step; the API is in `simulator.softphone.api`, its decisions in `.control`.
"""

from simulator.softphone.api import routes

__all__ = ["routes"]
