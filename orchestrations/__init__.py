"""Durable orchestrations: one per call, running IVR flows (the IVR flows issue adds them)."""
