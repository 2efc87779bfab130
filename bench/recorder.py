"""(e) The compliance recorder (mediavm/recorder.py): frames per second per core, and single-participant calls
per core, beside a baseline that only copies each frame to a file, measured in the same run.

- baseline: each 640-byte frame written to an open (buffered) file, nothing else;
- recorder: `CallRecorder.feed` with one speaker per tick, through its block buffer and background flushes,
  into a sink that discards (the recorder alone), a folder (file I/O in threads, like the baseline) and,
  when Azurite is installed, Blob Storage (Put Block / Put Block List over HTTP with the SDK);
- concurrency: N recorders fed a tick each in turn, as a worker with N calls does every 20 ms; calls per
  core = N x audio seconds / CPU seconds (all of the process's threads);
- mixdown: summing two speakers' frames in pure Python, the work a live mixed WAV would add (not done).
Figures are CPU time, not wall time: the feeding runs as fast as it can, yielding to the loop every tick,
and waits for the storage at every commit (a real call would give it 10 s).

`measure()` returns the figures; `report()` prints them as bench/stats.py tables; `python -m bench.recorder`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.stats import fmt, ratio, table
from mediavm.engine import FRAME_BYTES, FRAME_MS, AudioFrame
from mediavm.recorder import CallRecorder
from mediavm.sinks import BlobSink, FolderSink, RecordingSink
from mediavm.wavstream import BlockTarget

#: The issue's goal: 10,000 frames per second per core (200 single-participant calls at 50 frames/s).
GOAL_FRAMES_PER_S = 10_000
FRAMES_PER_CALL_SECOND = 1000 // FRAME_MS
TENANT = "22222222-2222-4222-8222-222222222222"


@dataclass
class Run:
    """One measured run: frames through it, CPU of the whole process and of the loop thread, wall time."""

    frames: int = 0
    cpu_s: float = 0.0
    loop_cpu_s: float = 0.0
    wall_s: float = 0.0
    lost_frames: int = 0
    failures: int = 0

    @property
    def frames_per_cpu_s(self) -> float:
        return self.frames / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def calls_per_core(self) -> float:
        """Single-participant calls one core keeps up with (a call is 50 frames a second)."""
        return self.frames_per_cpu_s / FRAMES_PER_CALL_SECOND

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "frames_per_cpu_s": self.frames_per_cpu_s, "calls_per_core": self.calls_per_core}


@dataclass
class Results:
    baseline: Run
    recorder: dict[str, Run]  # sink -> one call fed `frames` frames
    concurrent: dict[str, Run]  # sink -> `calls` calls of `call_seconds` each, fed side by side
    calls: int
    call_seconds: float
    mixdown: Run
    skipped: dict[str, str] = field(default_factory=dict)  # sink -> why it was not measured

    def as_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline.as_json(), "recorder": {k: v.as_json() for k, v in self.recorder.items()},
                "concurrent": {k: v.as_json() for k, v in self.concurrent.items()}, "calls": self.calls,
                "call_seconds": self.call_seconds, "mixdown": self.mixdown.as_json(), "skipped": self.skipped,
                "goal_frames_per_s": GOAL_FRAMES_PER_S}


class _Discard:
    """A sink that accepts every block at once: what the recorder costs by itself."""

    where = "discard"

    async def open(self, name: str) -> BlockTarget:
        return _DiscardTarget(name)

    async def sweep(self, prefix: str, stale_after: timedelta = timedelta(0),
                    now: datetime | None = None) -> list[str]:
        return []

    async def close(self) -> None:
        return None


class _DiscardTarget:
    def __init__(self, name: str) -> None:
        self.name = name

    async def stage(self, index: int, offset: int, data: bytes) -> None:
        return None

    async def commit(self, blocks: int, header: bytes, metadata: Mapping[str, str]) -> None:
        return None

    async def mark(self, metadata: Mapping[str, str]) -> None:
        return None


def _tone(frequency: float = 440.0) -> list[bytes]:
    """One second of a tone as 50 frames (440 Hz: whole cycles, so it repeats seamlessly)."""
    samples = array("h", (round(8000 * math.sin(2 * math.pi * frequency * n / 16_000)) for n in range(16_000)))
    pcm = samples.tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


@contextlib.contextmanager
def _timed(run: Run) -> Iterator[None]:
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    yield
    run.cpu_s += time.process_time() - cpu
    run.loop_cpu_s += time.thread_time() - loop_cpu
    run.wall_s += time.perf_counter() - wall


def baseline(frames: int, folder: Path) -> Run:
    """Copy each frame to a file, nothing else."""
    tone = _tone()
    run = Run(frames=frames)
    with (folder / "baseline.pcm").open("wb") as file, _timed(run):
        for n in range(frames):
            file.write(tone[n % 50])
    return run


async def recorder_run(sink: RecordingSink, frames: int, calls: int = 1) -> Run:
    """`calls` single-participant calls of `frames` frames each, fed a tick each in turn."""
    tone = _tone()
    recorders = [CallRecorder(sink, call_id=f"bench-{n}", tenant_id=TENANT) for n in range(calls)]
    run = Run(frames=frames * calls)
    with _timed(run):
        for slot in range(frames):
            pcm = tone[slot % 50]
            timestamp = slot * 200_000
            for recorder in recorders:
                recorder.feed([AudioFrame(1, timestamp, pcm)])
            await asyncio.sleep(0)  # what the worker's loop does between ticks: the flushes get to run
            if slot % 500 == 499:  # a commit was handed over: let the storage take it (10 s in a real call)
                await asyncio.gather(*(r.drain() for r in recorders))
        await asyncio.gather(*(r.close() for r in recorders))
    for recorder in recorders:
        report = recorder.report()
        run.lost_frames += report.frames_lost
        run.failures += len(report.failures)
    return run


def mixdown(frames: int) -> Run:
    """Two speakers summed sample by sample with clipping, in pure Python (no numpy, no audioop in 3.13)."""
    a, b = _tone(440.0), _tone(880.0)
    run = Run(frames=frames)
    with _timed(run):
        for n in range(frames):
            x, y = array("h"), array("h")
            x.frombytes(a[n % 50])
            y.frombytes(b[n % 50])
            array("h", [max(-32768, min(32767, p + q)) for p, q in zip(x, y, strict=True)]).tobytes()
    return run


async def _with_azurite(work: Callable[[RecordingSink], Awaitable[Run]]) -> Run | str:
    """Run `work` against a fresh Azurite, or say why not."""
    try:
        from azure.storage.blob.aio import BlobServiceClient

        from calling.config import Settings
        from calling.credentials import storage_credential
        from tests.azurite import azurite
    except ImportError as exc:
        return f"not available: {exc}"
    settings = Settings(bot_app_id="11111111-1111-4111-8111-111111111111", bot_tenant_id=TENANT,
                        allowed_tenants=frozenset({TENANT}), public_url="https://bot.example.com")
    try:
        with azurite() as account:
            async with BlobServiceClient(account, credential=storage_credential(account, settings)) as service:
                await service.create_container("bench")
            url = f"{account}/bench"
            sink = BlobSink(url, storage_credential(url, settings))
            try:
                return await work(sink)
            finally:
                await sink.close()
    except RuntimeError as exc:  # Azurite missing or not starting
        return str(exc)


async def _measure(frames: int, calls: int, call_seconds: float, blob: bool) -> Results:
    call_frames = round(call_seconds * FRAMES_PER_CALL_SECOND)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as scratch:
        folder = Path(scratch)
        base = baseline(frames, folder)
        single = {"discard": await recorder_run(_Discard(), frames),
                  "folder": await recorder_run(FolderSink(folder / "single"), frames)}
        side_by_side = {"discard": await recorder_run(_Discard(), call_frames, calls),
                        "folder": await recorder_run(FolderSink(folder / "calls"), call_frames, calls)}
    if blob:
        for label, work, into in (
                ("blob (Azurite)", lambda sink: recorder_run(sink, frames), single),
                ("blob (Azurite)", lambda sink: recorder_run(sink, call_frames, calls), side_by_side)):
            outcome = await _with_azurite(work)
            if isinstance(outcome, str):
                skipped[label] = outcome
            else:
                into[label] = outcome
    else:
        skipped["blob (Azurite)"] = "not asked for"
    return Results(base, single, side_by_side, calls, call_seconds, mixdown(min(frames, 5000)), skipped)


def measure(frames: int = 100_000, calls: int = 200, call_seconds: float = 30.0, *, blob: bool = True) -> Results:
    """The recorder's figures beside the baseline, from one run (about 30 s with Azurite; `quick()` for less)."""
    return asyncio.run(_measure(frames, calls, call_seconds, blob))


def quick(*, blob: bool = False) -> Results:
    return measure(frames=10_000, calls=20, call_seconds=10.0, blob=blob)


def report(result: Results) -> str:
    base = result.baseline
    rows = [["baseline: copy each frame to a file", fmt(base.frames_per_cpu_s), "-", fmt(base.calls_per_core),
             "-", "-"]]
    for sink, run in result.recorder.items():
        rows.append([f"recorder, one call, {sink}", fmt(run.frames_per_cpu_s), ratio(run.frames_per_cpu_s,
                     base.frames_per_cpu_s), fmt(run.calls_per_core), fmt(run.frames / run.loop_cpu_s)
                     if run.loop_cpu_s else "-", f"{run.lost_frames} / {run.failures}"])
    for sink, run in result.concurrent.items():
        rows.append([f"recorder, {result.calls} calls side by side, {sink}", fmt(run.frames_per_cpu_s),
                     ratio(run.frames_per_cpu_s, base.frames_per_cpu_s), fmt(run.calls_per_core),
                     fmt(run.frames / run.loop_cpu_s) if run.loop_cpu_s else "-",
                     f"{run.lost_frames} / {run.failures}"])
    mix = result.mixdown
    rows.append(["mixdown of 2 speakers in pure Python (not done live)", fmt(mix.frames_per_cpu_s),
                 ratio(mix.frames_per_cpu_s, base.frames_per_cpu_s), fmt(mix.calls_per_core), "-", "-"])
    title = ("(e) Compliance recorder: 20 ms frames of 16 kHz mono PCM, one speaker per call, CPU time of the "
             "whole process\n"
             "    baseline = each frame written to an open file; recorder = CallRecorder.feed, its block buffer, "
             "the background\n"
             "    flushes and the sink; calls per core = frames per CPU second / 50")
    out = [table(title, ["path", "frames/s per core", "vs baseline", "calls per core", "loop thread frames/s",
                         "lost / failed"], rows)]
    figures = [run.frames_per_cpu_s for run in (*result.recorder.values(), *result.concurrent.values())]
    slowest = min(figures) if figures else float("nan")
    verdict = "met" if slowest >= GOAL_FRAMES_PER_S else "NOT MET"
    out.append(f"    goal: at least {GOAL_FRAMES_PER_S:,} frames/s per core ({GOAL_FRAMES_PER_S // 50} calls): "
               f"slowest path {fmt(slowest)} frames/s, {verdict}")
    for sink, why in result.skipped.items():
        out.append(f"    {sink}: skipped ({why})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recorder", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-blob", action="store_true", help="skip the Azurite runs")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    result = quick(blob=not args.no_blob) if args.quick else measure(blob=not args.no_blob)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
