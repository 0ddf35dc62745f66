"""`apu run`: propose → ask → denoise → fit → filter → export, resumable at every stage.

Layout of the output folder `DATASET`:

- `ask/` — the ask stage's folder (`cache.sqlite`, `candidates.jsonl`, `answers.jsonl`,
  `contacts.jsonl`, `pairs.npz`, `summary.json`); rerunning asks nothing already cached;
- `fits/` — the fit engine's fits directory (shards; a rerun skips pairs already fitted; `keep` = the
  automatic filter);
- `dataset.npz` — the kept pairs (format in `apu_jax.data.dataset`), rewritten from the two above;
- `summary.json` — the run summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from apu_jax.ask.stage import AskOptions, ProgressFactory, run_ask
from apu_jax.data.dataset import export_dataset
from apu_jax.data.pairset import atomic_write_text


def fit_stage(
    pairs_path: Path, fits_dir: Path, body_model: Any, progress: ProgressFactory | None, **fit_kwargs: Any
) -> dict[str, Any]:
    """Run the fit engine on a pair set (the single place `apu run` touches the fit engine)."""
    from apu_jax.fit.run import fit_pairset

    advance = None
    if progress is not None:
        bar: dict[str, Any] = {}

        def advance(done: int, total: int) -> None:
            if "f" not in bar:
                bar["f"], bar["n"] = progress("fit", total), 0
            bar["f"](done - bar["n"])
            bar["n"] = done

    return fit_pairset(pairs_path, fits_dir, model=body_model, progress=advance, **fit_kwargs)


def run_pipeline(
    manifest: str | Path,
    out_dir: str | Path,
    options: AskOptions | None = None,
    progress: ProgressFactory | None = None,
    part_regions: Any = None,
    model: Any = None,
    fit_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole pipeline over a manifest.

    Args:
        manifest: the JSONL manifest.
        out_dir: the dataset folder (created).
        options: ask options (provider, samples, ...). `options.dry_run` stops after the ask estimate.
        progress: optional progress-bar factory.
        part_regions: region lookup override (tests); default: the body model's regions.
        model: a loaded body model (default: `options.body_model`).
        fit_kwargs: extra arguments for `fit_pairset` (structure, weights, batch_size, ...).
    Returns:
        The run summary (also `out_dir/summary.json`): pairs proposed / asked / with contacts / fitted /
        kept, requests, cost, seconds per stage.
    """
    t0 = time.perf_counter()
    options = options or AskOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None and not options.dry_run:
        from apu_jax.body import load_model

        model = load_model(options.body_model)
    ask = run_ask(manifest, out / "ask", options, progress, part_regions, model)
    t_ask = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "provider": ask["provider"],
        "model": ask["model"],
        "pairs_considered": ask["pairs_considered"],
        "pairs_proposed": ask["pairs_proposed"],
        "pairs_asked": ask.get("pairs_asked", 0),
        "pairs_with_contacts": ask.get("pairs_with_contacts", 0),
        "requests": ask["requests"],
        "cached": ask["cached"],
        "answered": ask["answered"],
        "failed": ask["failed"],
        "estimated_cost_usd": ask["estimated_cost_usd"],
        "cost_usd": ask.get("cost_usd", 0.0),
        "dry_run": options.dry_run,
    }
    if options.dry_run:
        summary.update(planned_requests=ask["planned_requests"], seconds={"ask": round(t_ask, 3)})
        return summary
    pairs_path = out / "ask" / "pairs.npz"
    fitted = kept = 0
    t_fit = t_export = 0.0
    fit: dict[str, Any] = {}
    if ask.get("pairs_with_contacts", 0) > 0:
        t1 = time.perf_counter()
        fit = fit_stage(pairs_path, out / "fits", model, progress, **(fit_kwargs or {}))
        t_fit = time.perf_counter() - t1
        t2 = time.perf_counter()
        exported = export_dataset(pairs_path, out / "fits", out / "dataset.npz")
        t_export = time.perf_counter() - t2
        fitted, kept = exported["fitted"], exported["kept"]
    summary.update(
        pairs_fitted=fitted,
        pairs_kept=kept,
        fit_errors=fit.get("n_errors", 0),
        fit_skipped_done=fit.get("n_skipped_done", 0),
        dataset=str(out / "dataset.npz") if kept or fitted else None,
        seconds={
            "ask": round(t_ask, 3),
            "fit": round(t_fit, 3),
            "export": round(t_export, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
