"""Benchmarks for the calling bot: cold import of the Functions app, the incoming-call webhook path,
an IVR call's tone-to-next-Graph-request latency at step 1 and step 500 (bench/ivr.py: through the local
host with the Durable replay engine, against the engine called directly), and load (bench/load.py: many
whole IVR calls dialling at once through the local host, on the real clock, against the same call alone).

Run with `python -m bench` (or `python3 dev.py bench`); `--quick` for fewer iterations, `--json PATH` to
write the figures. Every figure is compared with a baseline measured in the same run, on this machine.
Nothing leaves loopback: Graph, the OpenID configuration and the signing keys are served by a stub on
127.0.0.1 (or the simulator, for the IVR and load sections), started and stopped by the benchmark.
This is not a test: nothing asserts on timing.
"""
