"""The media worker's gauges: what the scale set's autoscale, the media workbook and its alerts read.

OpenTelemetry observable gauges, read at each export (every 60 s: OTEL_METRIC_EXPORT_INTERVAL, the Azure
Monitor distro's default). With APPLICATIONINSIGHTS_CONNECTION_STRING set, `calling.telemetry.configure`
installs the Azure Monitor exporter, which sends each gauge to Application Insights as a custom metric: every
value, with its attributes, to the `customMetrics` table, and a pre-aggregated copy without attributes to the
metric store under the `azure.applicationinsights` namespace, which autoscale can read ("Autoscale a web app
by using custom metrics": only the Standard and azure.applicationinsights namespaces). The exporter puts a
metric in that namespace unless APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN is true: leave it unset.
Without a connection string the OpenTelemetry API is a no-op and nothing is measured.

| Metric | Value | Attributes |
|---|---|---|
| `media.live_calls` | calls the worker holds now | |
| `media.capacity` | MEDIA_WORKER_CAPACITY | |
| `media.load_percent` | 100 x live / capacity: the autoscale metric (its average over the instances) | |
| `media.taking` | 1 while the worker can take hand-offs (`taking`, `full`), 0 otherwise; the heartbeat | `state` |

Each row in `customMetrics` carries the instance in `cloud_RoleInstance` (the VM's computer name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from mediavm.worker import MediaWorker

log = logging.getLogger("mediavm.metrics")

METER_NAME = "mediavm"
LIVE_CALLS = "media.live_calls"
CAPACITY = "media.capacity"
LOAD_PERCENT = "media.load_percent"
TAKING = "media.taking"
METRICS = (LIVE_CALLS, CAPACITY, LOAD_PERCENT, TAKING)
#: `media.taking`'s `state`: taking (room for calls), full (every slot taken), draining (shutting down: a scale-in,
#: maintenance or a stop), queue_unreachable (the last take from the hand-off queue failed), stopped (after the
#: drain, the last value the process exports).
STATES = ("taking", "full", "draining", "queue_unreachable", "stopped")
#: The states in which the worker can take hand-offs (media.taking = 1).
ABLE = frozenset({"taking", "full"})
FLUSH_MILLIS = 5000


class Gauges:
    """The worker's gauges, registered on `meter` (the global meter provider's, by default)."""

    def __init__(self, worker: MediaWorker, meter: Meter | None = None) -> None:
        self._worker = worker
        self.closed = False
        meter = meter or metrics.get_meter(METER_NAME)
        meter.create_observable_gauge(LIVE_CALLS, callbacks=[self._live], unit="{call}",
                                      description="Calls the media worker holds now")
        meter.create_observable_gauge(CAPACITY, callbacks=[self._capacity], unit="{call}",
                                      description="Calls the media worker takes at most (MEDIA_WORKER_CAPACITY)")
        meter.create_observable_gauge(LOAD_PERCENT, callbacks=[self._load], unit="%",
                                      description="Live calls as a percentage of capacity (the autoscale metric)")
        meter.create_observable_gauge(TAKING, callbacks=[self._taking],
                                      description="1 while the media worker can take hand-offs, 0 otherwise")

    def state(self) -> str:
        worker = self._worker
        if self.closed:
            return "stopped"
        if worker.draining:
            return "draining"
        if worker.take_errors:
            return "queue_unreachable"
        if len(worker.live) >= worker.settings.capacity:
            return "full"
        return "taking"

    def _live(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(len(self._worker.live))]

    def _capacity(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._worker.settings.capacity)]

    def _load(self, _: CallbackOptions) -> Iterable[Observation]:
        capacity = self._worker.settings.capacity
        return [Observation(round(100.0 * len(self._worker.live) / capacity, 2) if capacity else 0.0)]

    def _taking(self, _: CallbackOptions) -> Iterable[Observation]:
        state = self.state()
        return [Observation(1 if state in ABLE else 0, {"state": state})]

    def close(self) -> None:
        """The service stopped: the gauges say `stopped`, and what is measured now is exported before the process
        exits (so a scaled-in instance's last heartbeat says why it goes quiet)."""
        self.closed = True
        flush = getattr(metrics.get_meter_provider(), "force_flush", None)
        if callable(flush):
            try:
                flush(timeout_millis=FLUSH_MILLIS)
            except Exception:  # the exporter's trouble must not turn a clean stop into a crash
                log.exception("exporting the last gauge values failed")


def observe(worker: MediaWorker, meter: Meter | None = None) -> Gauges:
    return Gauges(worker, meter)
