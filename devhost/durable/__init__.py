"""The Durable Functions side of devhost: history, replay through the SDK, the engine, storage, management API."""
