"""The ask stage: manifest → candidate pairs → LVLM answers → denoised soft contact maps → pair set.

Output folder (`out_dir`):

- `cache.sqlite` — the answer cache (unless `cache` points elsewhere);
- `candidates.jsonl` — every pair of people considered, accepted or not, and why;
- `answers.jsonl` — every answer of this run (cached or new), in the replay format, so the run can be
  reproduced with `--provider replay --replay out_dir/answers.jsonl`;
- `contacts.jsonl` — per asked pair: the voted, laterality-denoised contacts with their weights;
- `pairs.npz` — the pair set (docs/FORMATS.md) of the pairs with at least one contact, for the fit;
- `summary.json` — the counts and costs returned by `run_ask`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apu_jax.ask.cache import AnswerCache, request_key
from apu_jax.ask.denoise import DenoiseConfig, ResolvedContact, resolve_laterality, soft_contact_map, vote
from apu_jax.ask.image import budget_scale, file_sha256, person_box, prepare_pair_image, read_image
from apu_jax.ask.pricing import TYPICAL_OUTPUT_TOKENS, cost_usd
from apu_jax.ask.prompt import PROMPT_VERSION
from apu_jax.ask.proposal import Candidate, ProposalConfig, propose_pairs
from apu_jax.ask.providers import AskRequest, Provider, make_provider
from apu_jax.ask.runner import AskRunner, Outcome
from apu_jax.data.importers import ImageInput, load_manifest
from apu_jax.data.pairset import atomic_write_text, save_pairset

# progress(description, total) -> advance(n); the CLI passes rich progress bars, tests pass None.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class AskOptions:
    """Everything `apu ask` can be told (CLI flags map one to one)."""

    provider: str = "heuristic"
    model: str | None = None  # provider model id (None: the provider's default)
    base_url: str | None = None  # API base URL (OpenAI-compatible servers, mock servers)
    replay: str | None = None  # replay file (default: answers.jsonl next to the manifest)
    samples: int | None = None  # samples per pair (None: 3 for anthropic/openai, recorded for replay, 1 else)
    concurrency: int = 8  # requests in flight
    rpm: float | None = None  # requests per minute (None: unlimited)
    tpm: float | None = None  # estimated tokens per minute (None: unlimited)
    batch: bool = False  # Message Batches (anthropic)
    batch_poll: float = 30.0  # seconds between batch status polls
    dry_run: bool = False  # count and price, send nothing
    cache: str | None = None  # cache path (default out_dir/cache.sqlite)
    max_retries: int = 5  # SDK retries for 408/409/429/5xx
    timeout: float = 120.0  # seconds per HTTP request
    max_tokens: int = 1024  # output token cap per answer
    price_in: float | None = None  # USD per 1M input tokens (override)
    price_out: float | None = None  # USD per 1M output tokens (override)
    retry_invalid: bool = False  # ask again where the cached answer was invalid
    data_root: str | None = None  # root of manifest paths (default: the manifest's folder)
    allow_outside_root: bool = False
    body_model: str = "default"  # model for BEV import and regions
    betas: str = "mean"  # BEV shape approximation: mean | limbs
    proposal: ProposalConfig = field(default_factory=ProposalConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)


@dataclass
class PairJob:
    """One accepted candidate pair and its requests."""

    pair_id: str
    image: ImageInput
    a: int
    b: int
    image_sha: str
    pair_desc: str
    sent_size: tuple[int, int]
    requests: list[AskRequest] = field(default_factory=list)


class _EncodedImages:
    """Annotated JPEGs, encoded on first use and kept for a few pairs (all samples of a pair share one)."""

    def __init__(self, size: int = 32):
        self._lru: OrderedDict[str, bytes] = OrderedDict()
        self._size = size

    def getter(self, job: PairJob, min_conf: float) -> Callable[[], bytes]:
        def get() -> bytes:
            if job.pair_id in self._lru:
                self._lru.move_to_end(job.pair_id)
                return self._lru[job.pair_id]
            img = read_image(job.image.image_path)
            people = job.image.people
            jpeg = prepare_pair_image(img, people[job.a].keypoints, people[job.b].keypoints, min_conf).jpeg
            self._lru[job.pair_id] = jpeg
            if len(self._lru) > self._size:
                self._lru.popitem(last=False)
            return jpeg

        return get


def _default_replay(manifest: Path) -> Path:
    return manifest.resolve().parent / "answers.jsonl"


def build_jobs(
    images: Sequence[ImageInput], provider: Provider, options: AskOptions
) -> tuple[list[dict[str, Any]], list[PairJob]]:
    """Propose candidates and build the requests of the accepted ones.

    Returns:
        (candidate records for candidates.jsonl, jobs of the accepted pairs).
    """
    records: list[dict[str, Any]] = []
    jobs: list[PairJob] = []
    encoder = _EncodedImages()
    cfg = options.proposal
    for img in images:
        if len(img.people) < 2:
            continue
        kp = np.stack([p.keypoints for p in img.people])
        cands: list[Candidate] = propose_pairs(kp, [p.joints2d for p in img.people], cfg)
        sha = None
        for c in cands:
            records.append({"image_id": img.id, "image": img.image_rel, **asdict(c)})
            if not c.accepted:
                continue
            sha = sha or file_sha256(img.image_path)
            box_a = person_box(kp[c.a], img.image_size, cfg.min_conf)
            box_b = person_box(kp[c.b], img.image_size, cfg.min_conf)
            s = budget_scale(*img.image_size)
            job = PairJob(
                pair_id=f"{img.id}:{c.a}-{c.b}",
                image=img,
                a=c.a,
                b=c.b,
                image_sha=sha,
                pair_desc=f"{c.a}-{c.b}@{','.join(map(str, box_a))};{','.join(map(str, box_b))}",
                sent_size=(round(img.image_size[0] * s), round(img.image_size[1] * s)),
            )
            getter = encoder.getter(job, cfg.min_conf)
            for sample in range(provider.samples_for(job.pair_id, options.samples)):
                key = request_key(
                    sha, job.pair_desc, img.label, PROMPT_VERSION, provider.name, provider.model, sample
                )
                job.requests.append(
                    AskRequest(
                        key=key,
                        pair_id=job.pair_id,
                        sample=sample,
                        image_sha=sha,
                        pair_desc=job.pair_desc,
                        image=getter,
                        image_size=job.sent_size,
                        label=img.label,
                        keypoints=kp[[c.a, c.b]],
                    )
                )
            jobs.append(job)
    return records, jobs


def estimate(
    provider: Provider, requests: Sequence[AskRequest], batch: bool, max_tokens: int
) -> dict[str, Any]:
    """Tokens and cost of sending `requests` (typical output, and the `max_tokens` upper bound)."""
    tokens_in = sum(provider.estimate_tokens(r) for r in requests)
    typical_out = TYPICAL_OUTPUT_TOKENS * len(requests)
    max_out = max_tokens * len(requests)
    return {
        "estimated_input_tokens": int(tokens_in),
        "estimated_output_tokens": int(typical_out),
        "estimated_cost_usd": round(cost_usd(provider.price, tokens_in, typical_out, batch=batch), 6),
        "max_cost_usd": round(cost_usd(provider.price, tokens_in, max_out, batch=batch), 6),
        "price_known": provider.price.known,
        "price_usd_per_mtok": {"input": provider.price.input, "output": provider.price.output},
    }


def _contacts_for(
    job: PairJob, outcomes: dict[str, Outcome], cfg: DenoiseConfig
) -> tuple[list[ResolvedContact], dict]:
    kp = job.image.people
    kp_a, kp_b = kp[job.a].keypoints, kp[job.b].keypoints
    samples, descriptions, failed = [], [], 0
    for req in job.requests:
        out = outcomes.get(req.key)
        if out is None or out.status != "ok" or out.answer is None:
            failed += 1
            continue
        samples.append([resolve_laterality(c, kp_a, kp_b, cfg) for c in out.answer.contacts])
        descriptions.append(out.answer.description)
    voted = vote(samples, cfg)
    info = {
        "samples_answered": len(samples),
        "samples_failed": failed,
        "description": descriptions[0] if descriptions else "",
    }
    return voted, info


def run_ask(
    manifest: str | Path,
    out_dir: str | Path,
    options: AskOptions | None = None,
    progress: ProgressFactory | None = None,
    part_regions: Callable[[str, str], Sequence[int]] | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Run the ask stage end to end.

    Args:
        manifest: the JSONL manifest.
        out_dir: output folder (created).
        options: all settings.
        progress: optional progress-bar factory.
        part_regions: `(part, side) -> region ids`; default: `apu_jax.regions.vocabulary_to_regions` on the
            body model's default region set.
        model: the body model (a `BodyModel`); default: loaded from `options.body_model` when needed.
    Returns:
        The summary dict (also written to `out_dir/summary.json`), with at least `requests`, `cached`,
        `answered`, `failed`, `estimated_cost_usd`.
    """
    t0 = time.time()
    options = options or AskOptions()
    manifest, out = Path(manifest), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def get_model() -> Any:
        nonlocal model
        if model is None:
            from apu_jax.body import load_model

            model = load_model(options.body_model)
        return model

    images = load_manifest(manifest, options.data_root, options.allow_outside_root, get_model, options.betas)
    replay = options.replay or (str(_default_replay(manifest)) if options.provider == "replay" else None)
    provider = make_provider(
        options.provider,
        options.model,
        options.base_url,
        replay,
        options.max_retries,
        options.timeout,
        options.max_tokens,
        options.price_in,
        options.price_out,
    )
    records, jobs = build_jobs(images, provider, options)
    atomic_write_text(out / "candidates.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    requests = [r for job in jobs for r in job.requests]
    cache = AnswerCache(options.cache or out / "cache.sqlite") if provider.paid else None
    summary: dict[str, Any] = {
        "provider": provider.name,
        "model": provider.model,
        "prompt_version": PROMPT_VERSION,
        "images": len(images),
        "pairs_considered": len(records),
        "pairs_proposed": len(jobs),
        "samples_per_pair": (len(requests) / len(jobs)) if jobs else 0,
        "batch": options.batch,
        "dry_run": options.dry_run,
    }
    try:
        runner = AskRunner(
            provider, cache, options.concurrency, options.rpm, options.tpm, options.retry_invalid,
            progress(f"ask ({provider.name})", len(requests)) if progress else None,
        )  # fmt: skip
        uncached = [r for r in requests if runner.cached(r) is None]
        est = estimate(provider, uncached if provider.paid else [], options.batch, options.max_tokens)
        if options.dry_run:
            summary.update(
                requests=0, planned_requests=len(uncached), cached=len(requests) - len(uncached), answered=0,
                failed=0, cost_usd=0.0, **est,
            )  # fmt: skip
            atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
            return summary
        if options.batch:
            outcomes = asyncio.run(_run_batch(runner, requests, options.batch_poll))
        else:
            outcomes = asyncio.run(_run(runner, requests))
    finally:
        if cache is not None:
            cache.close()

    if part_regions is None:
        from apu_jax.regions import load_regions, vocabulary_to_regions

        region_set = load_regions(get_model())

        def part_regions(p: str, s: str) -> list[int]:
            return vocabulary_to_regions(p, s, region_set)

    st = runner.stats
    _write_answers(out / "answers.jsonl", jobs, outcomes, provider)
    n_written, corrected, contact_lines = _write_pairs(
        out, jobs, outcomes, options, part_regions, provider, manifest
    )
    atomic_write_text(out / "contacts.jsonl", "".join(json.dumps(x) + "\n" for x in contact_lines))
    summary.update(
        requests=st.requests,
        cached=st.cached,
        answered=st.answered,
        failed=st.failed,
        invalid=st.invalid,
        errors=st.errors,
        error_messages=st.error_messages,
        input_tokens=st.input_tokens,
        output_tokens=st.output_tokens,
        cost_usd=round(st.cost_usd, 6),
        pairs_asked=len(jobs),
        pairs_with_contacts=n_written,
        laterality_corrected=corrected,
        pairs_path=str(out / "pairs.npz") if n_written else None,
        seconds=round(time.time() - t0, 3),
        **est,
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


async def _run(runner: AskRunner, requests: list[AskRequest]) -> dict[str, Outcome]:
    try:
        return await runner.run(requests)
    finally:
        await runner.provider.aclose()


async def _run_batch(runner: AskRunner, requests: list[AskRequest], poll: float) -> dict[str, Outcome]:
    try:
        return await runner.run_batch(requests, poll)
    finally:
        await runner.provider.aclose()


def _write_answers(path: Path, jobs: list[PairJob], outcomes: dict[str, Outcome], provider: Provider) -> None:
    lines = []
    for job in jobs:
        for req in job.requests:
            o = outcomes.get(req.key)
            if o is None or o.status == "error":  # no answer: nothing to replay
                continue
            lines.append(
                json.dumps(
                    {
                        "pair_id": job.pair_id,
                        "sample": req.sample,
                        "image": job.image.image_rel,
                        "pair": [job.a, job.b],
                        "provider": provider.name,
                        "model": provider.model,
                        "prompt_version": PROMPT_VERSION,
                        "status": o.status,
                        "raw": o.raw,
                        "error": o.error,
                    }
                )
            )
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _write_pairs(
    out: Path,
    jobs: list[PairJob],
    outcomes: dict[str, Outcome],
    options: AskOptions,
    part_regions: Callable[[str, str], Sequence[int]],
    provider: Provider,
    manifest: Path,
) -> tuple[int, int, list[dict[str, Any]]]:
    rows, lines, corrected = [], [], 0
    for job in jobs:
        voted, info = _contacts_for(job, outcomes, options.denoise)
        corrected += sum(c.corrected for c in voted)
        pairs, weights, groups = soft_contact_map(voted, part_regions, return_groups=True)
        contacts = [
            {
                "part_a": c.part_a, "side_a": c.side_a, "part_b": c.part_b, "side_b": c.side_b,
                "confidence": round(c.confidence, 4), "evidence": round(c.evidence, 4),
                "weight": round(c.weight, 4), "votes": c.votes, "corrected": c.corrected,
                "distance": None if not np.isfinite(c.distance) else round(c.distance, 4),
            }
            for c in voted
        ]  # fmt: skip
        lines.append(
            {"pair_id": job.pair_id, "image": job.image.image_rel, "label": job.image.label, **info,
             "contacts": contacts, "region_pairs": len(pairs)}
        )  # fmt: skip
        if len(pairs):
            rows.append((job, pairs, weights, info, contacts, groups))
    path = out / "pairs.npz"
    if not rows:
        path.unlink(missing_ok=True)
        return 0, corrected, lines
    # Contact slots are bucketed to a power of two (≥ 16) so pair sets of different runs share fit compiles.
    n, c_max = len(rows), max(16, 1 << (max(len(r[1]) for r in rows) - 1).bit_length())
    people = [(job.image.people[job.a], job.image.people[job.b]) for job, *_ in rows]
    contact_pairs = np.full((n, c_max, 2), -1, np.int32)
    contact_weights = np.zeros((n, c_max), np.float32)
    contact_groups = np.full((n, c_max), -1, np.int32)
    for i, (_, pairs, weights, _, _, groups) in enumerate(rows):
        contact_pairs[i, : len(pairs)] = pairs
        contact_weights[i, : len(weights)] = weights
        contact_groups[i, : len(groups)] = groups
    arrays = {
        "pair_id": np.asarray([job.pair_id for job, *_ in rows]),
        "image": np.asarray([job.image.image_rel for job, *_ in rows]),
        "image_size": np.asarray([job.image.image_size for job, *_ in rows], np.int32),
        "keypoints": np.asarray([[a.keypoints, b.keypoints] for a, b in people], np.float32),
        "contact_pairs": contact_pairs,
        "contact_weights": contact_weights,
        "contact_groups": contact_groups,
        "label": np.asarray([job.image.label or "" for job, *_ in rows]),
        "description": np.asarray([info["description"] for _, _, _, info, _, _ in rows]),
        "contacts_json": np.asarray([json.dumps(c) for _, _, _, _, c, _ in rows]),
    }
    for key in ("global_orient", "body_pose", "betas", "transl"):
        arrays[f"init_{key}"] = np.asarray([[a.init[key], b.init[key]] for a, b in people], np.float32)
    data_root = Path(options.data_root) if options.data_root else manifest.resolve().parent
    meta = {
        "format": "apu-pairset",
        "version": 1,
        "keypoint_format": "body25",
        "model": options.body_model,
        "region_set": "default",
        "source": {
            "stage": "ask",
            "manifest": str(manifest),
            "data_root": str(data_root.resolve()),
            "provider": provider.name,
            "provider_model": provider.model,
            "prompt_version": PROMPT_VERSION,
        },
    }
    save_pairset(path, meta=meta, **arrays)
    return n, corrected, lines
