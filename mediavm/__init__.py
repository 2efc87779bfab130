"""The media worker: a Python service on each media VM that takes app-hosted calls from the webhook.

It receives hand-offs (calling/handoff.py) over Service Bus, creates a media session through a
`MediaEngine` (mediavm/engine.py: Microsoft's real-time media library on Windows, or the loopback engine
for development and tests), answers the call with that session's configuration and its own callback URL,
serves the call's notifications with the same `calling/` core the Functions app uses, and runs the call's
application: compliance recording first (mediavm/compliance.py, mediavm/recorder.py). See docs/media.md.
"""
