"""A media worker that records one call and is killed mid-call by the test (tests/test_recorder_blob.py).

python -m tests.recorder_child blob <container url> | folder <path>
It records one participant speaking a 440 Hz tone, committing every 0.2 s of the call, prints
`committed <frames>` once three commits are stored, and goes on recording until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from calling.identities import teams_user
from mediavm.engine import AudioFrame
from mediavm.recorder import CallRecorder
from mediavm.sinks import BlobSink, FolderSink, RecordingSink
from tests.tones import tone_frame

CALL_ID = "crash-call-1"
TENANT_ID = "22222222-2222-4222-8222-222222222222"
SUBJECT = teams_user("33333333-3333-4333-8333-333333333333", display_name="Recorded User", tenant_id=TENANT_ID)
ROSTER = [{"id": "p-crash", "info": {"identity": {"user": {"id": "u-crash", "displayName": "Crash Test"}}},
           "mediaStreams": [{"mediaType": "audio", "sourceId": "5", "direction": "sendReceive"}]}]
FREQUENCY = 440.0
FRAMES = [tone_frame(FREQUENCY, n) for n in range(50)]  # 1 s of tone, repeated (50 frames of 440 Hz: whole cycles)


async def main(kind: str, where: str) -> None:
    sink: RecordingSink
    if kind == "blob":
        from calling.config import Settings
        from calling.credentials import storage_credential

        settings = Settings(bot_app_id="11111111-1111-4111-8111-111111111111", bot_tenant_id=TENANT_ID,
                            allowed_tenants=frozenset({TENANT_ID}), public_url="https://bot.example.com")
        sink = BlobSink(where, storage_credential(where, settings))
    else:
        sink = FolderSink(where)
    recorder = CallRecorder(sink, call_id=CALL_ID, tenant_id=TENANT_ID, subject=SUBJECT, commit_seconds=0.2)
    recorder.participants(ROSTER)
    told = False
    n = 0
    while True:
        recorder.feed([AudioFrame(5, n * 200_000, FRAMES[n % len(FRAMES)])])
        n += 1
        await asyncio.sleep(0.002)
        [track] = recorder.report().tracks
        if not told and track.commits >= 3:
            print(f"committed {track.committed_frames}", flush=True)
            told = True


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
