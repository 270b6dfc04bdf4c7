"""Preset resolution, offline: a local path, a Hub id in the local cache, or the offline models
(and the line that says which was used)."""

from __future__ import annotations

import json

import pytest

from faithscope.models.loading import model_available
from faithscope.studies import load_preset, parse_spec, preset_names
from faithscope.studies.spec import resolve_models


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hub, and an empty private Hugging Face cache."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return cache


def _folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return path


def _cached(cache, repo: str):
    """The layout huggingface_hub leaves in its cache after downloading a repo's config."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("a" * 40)


def _spec(models: str) -> str:
    return f"""
name: r
{models}
datasets: [sst2]
explainers: [gradient]
"""


def test_local_path_cached_hub_id_or_offline_models(offline, tmp_path):
    local = _folder(tmp_path / "local")
    fallback = _folder(tmp_path / "fallback")
    keep = parse_spec(_spec(f"models: [{{name: a, path: {local}}}]\n"
                            f"offline_models: [{{name: f, path: {fallback}}}]"))
    spec, note = resolve_models(keep)
    assert [m.name for m in spec.models] == ["a"] and not spec.offline_models
    assert note.startswith("models: a")
    hub = parse_spec(_spec("models: [{name: a, hub: org/tiny}, {name: b, path: "
                           f"{local}}}]\noffline_models: [{{name: f, path: {fallback}}}]"))
    spec, note = resolve_models(hub)
    assert [m.name for m in spec.models] == ["f"]
    assert "org/tiny" in note and "using the offline models" in note and "f (" in note
    _cached(offline, "org/tiny")
    assert model_available("org/tiny")
    spec, note = resolve_models(hub)
    assert [m.name for m in spec.models] == ["a", "b"] and "offline" not in note
    plain = parse_spec(_spec("models: [{name: a, hub: org/absent}]"))
    assert resolve_models(plain) == (plain, "")  # no offline models: unchanged, fails at load


def test_shipped_presets_fall_back_to_the_offline_models(offline, monkeypatch, tmp_path):
    monkeypatch.setenv("FAITHSCOPE_MODELS", str(tmp_path))
    expected = {"scaling": ["minilm-l3", "minilm-l6"], "architectures": ["minilm-l6",
                                                                         "mpnet-base"],
                "generation": ["stories260k"]}
    for name in preset_names():
        spec = load_preset(name)
        if name not in expected:
            continue
        assert len(spec.models) >= 5 if name != "architectures" else len(spec.models) == 6
        assert all(m.hub and not m.path for m in spec.models)
        resolved, note = resolve_models(spec)
        assert [m.name for m in resolved.models] == expected[name], name
        assert "using the offline models" in note
    sizes = [m.size for m in load_preset("scaling").models if m.size]
    assert min(sizes) < 5 and max(sizes) > 100
