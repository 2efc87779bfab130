"""Prompts from the flow: the list for preFetchMedia, and deterministic URIs and resource ids."""

from __future__ import annotations

from pathlib import Path

from calling.flows.harness import write_flows
from calling.flows.load import load_bundle
from calling.flows.prompts import flow_prompts, graph_prompt, prefetch, prompt_uri
from calling.graph import prompt_resource_id

FLOWS = Path(__file__).resolve().parent.parent / "flows"


def test_every_prompt_of_the_flow_and_its_sub_flows_once() -> None:
    bundle = load_bundle(FLOWS / "main-menu.yaml")
    keys = [p.key for p in flow_prompts(bundle)]
    assert keys == ["prompts/welcome.wav", "prompts/main-menu.wav", "prompts/no-input.wav",
                    "prompts/invalid-choice.wav", "prompts/connecting.wav", "prompts/sales-voicemail.wav",
                    "prompts/support-voicemail.wav", "prompts/voicemail.wav", "prompts/thanks-for-message.wav",
                    "prompts/goodbye.wav", "prompts/closed.wav"]  # the last one comes from after-hours.yaml


def test_uris_carry_the_content_hash_and_resource_ids_follow() -> None:
    bundle = load_bundle(FLOWS / "reminder.yaml")
    prompt = bundle.prompts["prompts/reminder-message.wav"]
    uri = prompt_uri("https://bot.example.com/prompts/", prompt)
    assert uri == f"https://bot.example.com/prompts/prompts/reminder-message.wav?v={prompt.sha256[:16]}"
    sas = prompt_uri("https://acct.blob.core.windows.net/flows?sv=2024&sig=abc", prompt)
    assert sas.endswith(f"/flows/prompts/reminder-message.wav?sv=2024&sig=abc&v={prompt.sha256[:16]}")
    graph = graph_prompt(bundle, "prompts/reminder-message.wav", "https://bot.example.com/prompts")
    assert graph.uri == uri and graph.resource_id == prompt_resource_id(uri)
    assert graph_prompt(bundle, prompt.key, "https://bot.example.com/prompts") == graph  # deterministic


def test_a_changed_recording_gets_a_new_resource_id(tmp_path: Path) -> None:
    write_flows(tmp_path, {"f.yaml": "nodes:\n  a: {type: play, prompt: a.wav, next: b}\n  b: {type: hangup}\n"})
    before = graph_prompt(load_bundle(tmp_path / "f.yaml"), "a.wav", "https://x.example")
    (tmp_path / "a.wav").unlink()
    write_flows(tmp_path, {"f.yaml": (tmp_path / "f.yaml").read_text()}, prompt_seconds=2)
    after = graph_prompt(load_bundle(tmp_path / "f.yaml"), "a.wav", "https://x.example")
    assert before.resource_id != after.resource_id


def test_prefetch_is_the_answer_media_config() -> None:
    bundle = load_bundle(FLOWS / "reminder.yaml")
    media = prefetch(bundle, "https://bot.example.com/prompts")
    assert [p.uri.split("?")[0].rsplit("/", 1)[1] for p in media.prefetch] == [
        "reminder-message.wav", "reminder-options.wav", "no-input.wav", "invalid-choice.wav",
        "appointment-confirmed.wav", "not-confirmed.wav"]
    config = media.config()
    assert len(config.pre_fetch_media or []) == 6
