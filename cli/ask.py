"""`apu ask`: ask an LVLM which body parts of each candidate pair touch; write denoised contact maps.

Register with `from cli import ask as ask_cli; ask_cli.register(app)`; also runnable alone as
`python -m cli.ask MANIFEST --provider heuristic --out DIR`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import JsonOut, fail

# ------------------------------------------------------------------------------ options shared with `run`

Manifest = Annotated[Path, typer.Argument(help="JSONL manifest: one image per line (see docs/ASK.md).")]
Provider = Annotated[
    str, typer.Option("--provider", help="anthropic | openai | replay | heuristic (offline, no model).")
]
Model = Annotated[
    str | None,
    typer.Option(help="Model id (default: claude-sonnet-5-5 for anthropic, gpt-4.1 for openai)."),
]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="API base URL (vLLM / Ollama / any OpenAI-compatible server)."),
]
Replay = Annotated[
    Path | None,
    typer.Option(help="Recorded answers for --provider replay (default: answers.jsonl by the manifest)."),
]
Samples = Annotated[
    int | None,
    typer.Option(
        min=1, help="Answers per pair, voted (default: 3 for anthropic/openai, 1 heuristic, replay: all)."
    ),
]
Concurrency = Annotated[int, typer.Option(min=1, help="Requests in flight at once.")]
Rpm = Annotated[
    float | None, typer.Option("--rpm", min=0.001, help="Requests per minute limit (default: none).")
]
Tpm = Annotated[
    float | None, typer.Option("--tpm", min=1.0, help="Estimated tokens per minute limit (default: none).")
]
Cache = Annotated[Path | None, typer.Option(help="SQLite answer cache (default: OUT/cache.sqlite).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print requests, tokens and cost; send nothing.")]
Batch = Annotated[
    bool, typer.Option("--batch", help="Anthropic Message Batches: half price, results < 24 h.")
]
BatchPoll = Annotated[
    float, typer.Option("--batch-poll", min=0.0, help="Seconds between batch status polls.")
]
MaxRetries = Annotated[int, typer.Option("--max-retries", min=0, help="SDK retries on 408/409/429/5xx.")]
Timeout = Annotated[float, typer.Option(min=1.0, help="Seconds per HTTP request.")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", min=64, help="Output token cap per answer.")]
PriceIn = Annotated[
    float | None, typer.Option("--price-in", help="USD per 1M input tokens (override the table).")
]
PriceOut = Annotated[float | None, typer.Option("--price-out", help="USD per 1M output tokens (override).")]
RetryInvalid = Annotated[
    bool, typer.Option("--retry-invalid", help="Ask again where the cached answer was invalid (costs money).")
]
DataRoot = Annotated[
    Path | None, typer.Option("--data-root", help="Root of manifest paths (default: its folder).")
]
AllowOutside = Annotated[
    bool,
    typer.Option("--allow-outside-root", help="Accept manifest paths that resolve outside the data root."),
]
BodyModel = Annotated[str, typer.Option("--body-model", help="'default' or an SMPL-X .npz path.")]
Betas = Annotated[str, typer.Option(help="BEV shape approximation: mean (zeros) | limbs (bone-length fit).")]
MinClose = Annotated[int, typer.Option("--min-close", min=0, help="Candidate rule: close keypoints k.")]
MaxDist = Annotated[
    float, typer.Option("--max-dist", min=0.0, help="Candidate rule: distance d (pair scale).")
]
MaxMis = Annotated[
    float,
    typer.Option("--max-misalignment", min=0.0, help="Candidate rule: mesh–keypoint error (person size)."),
]
MinConf = Annotated[float, typer.Option("--min-keypoint-conf", help="Keypoint presence threshold.")]
Sigma = Annotated[
    float, typer.Option("--evidence-sigma", min=1e-6, help="Keypoint evidence scale (pair scale).")
]
MinWeight = Annotated[
    float, typer.Option("--min-weight", min=0.0, help="Drop voted contacts lighter than this.")
]


def make_options(**kw: Any) -> Any:
    """Build `AskOptions` from CLI keyword arguments (names as in the command signatures)."""
    from apu_jax.ask.denoise import DenoiseConfig
    from apu_jax.ask.proposal import ProposalConfig
    from apu_jax.ask.stage import AskOptions

    if kw["betas"] not in ("mean", "limbs"):
        raise typer.BadParameter("--betas must be 'mean' or 'limbs'")
    proposal = ProposalConfig(
        kw["min_close"], kw["max_dist"], kw["max_misalignment"], kw["min_keypoint_conf"]
    )
    denoise = DenoiseConfig(
        evidence_sigma=kw["evidence_sigma"], min_weight=kw["min_weight"], min_conf=kw["min_keypoint_conf"]
    )
    return AskOptions(
        provider=kw["provider"],
        model=kw["model"],
        base_url=kw["base_url"],
        replay=str(kw["replay"]) if kw["replay"] else None,
        samples=kw["samples"],
        concurrency=kw["concurrency"],
        rpm=kw["rpm"],
        tpm=kw["tpm"],
        batch=kw["batch"],
        batch_poll=kw["batch_poll"],
        dry_run=kw["dry_run"],
        cache=str(kw["cache"]) if kw["cache"] else None,
        max_retries=kw["max_retries"],
        timeout=kw["timeout"],
        max_tokens=kw["max_tokens"],
        price_in=kw["price_in"],
        price_out=kw["price_out"],
        retry_invalid=kw["retry_invalid"],
        data_root=str(kw["data_root"]) if kw["data_root"] else None,
        allow_outside_root=kw["allow_outside_root"],
        body_model=kw["body_model"],
        betas=kw["betas"],
        proposal=proposal,
        denoise=denoise,
    )


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]] | None]:
    """A rich progress-bar factory on stderr (None when disabled or stderr is not a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bars:

        def factory(description: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        yield factory


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's mistake (bad paths, malformed files, bad settings): exit code 2."""
    from apu_jax.ask.image import ImageError
    from apu_jax.ask.providers import ProviderFatal
    from apu_jax.body import ModelFileError
    from apu_jax.data.importers import InputFileError, ManifestError
    from apu_jax.data.pairset import PairSetError
    from apu_jax.fit.gmm import GmmFileError

    return (
        ManifestError,
        InputFileError,
        ImageError,
        ProviderFatal,
        PairSetError,
        ModelFileError,
        GmmFileError,
    )


def print_summary(summary: dict[str, Any], as_json: bool, title: str) -> None:
    """The summary as JSON (stdout) or as a short table."""
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        table.add_row(key, str(value))
    Console().print(table)


def ask(
    manifest: Manifest,
    provider: Provider,
    out: Annotated[Path, typer.Option("--out", help="Output folder (pairs.npz, contacts, answers, cache).")],
    model: Model = None,
    base_url: BaseUrl = None,
    replay: Replay = None,
    samples: Samples = None,
    concurrency: Concurrency = 8,
    rpm: Rpm = None,
    tpm: Tpm = None,
    cache: Cache = None,
    dry_run: DryRun = False,
    batch: Batch = False,
    batch_poll: BatchPoll = 30.0,
    max_retries: MaxRetries = 5,
    timeout: Timeout = 120.0,
    max_tokens: MaxTokens = 1024,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
    retry_invalid: RetryInvalid = False,
    data_root: DataRoot = None,
    allow_outside_root: AllowOutside = False,
    body_model: BodyModel = "default",
    betas: Betas = "mean",
    min_close: MinClose = 2,
    max_dist: MaxDist = 0.15,
    max_misalignment: MaxMis = 0.15,
    min_keypoint_conf: MinConf = 0.3,
    evidence_sigma: Sigma = 0.2,
    min_weight: MinWeight = 0.05,
    json_out: JsonOut = False,
) -> None:
    """Ask which body parts of each candidate pair touch; write the soft contact maps as a pair set.

    API keys come only from the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY) and are never written.
    """
    options = make_options(**{k: v for k, v in locals().items() if k not in ("manifest", "out", "json_out")})
    from apu_jax.ask.providers import ProviderError
    from apu_jax.ask.stage import run_ask

    try:
        with progress_bars(not json_out) as progress:
            summary = run_ask(manifest, out, options, progress=progress)
    except user_errors() as err:
        fail(str(err), 2)
    except ProviderError as err:
        fail(str(err), 1)
    except ValueError as err:  # invalid settings caught by the library (e.g. --batch with openai)
        fail(str(err), 2)
    print_summary(summary, json_out, "apu ask (dry run)" if dry_run else "apu ask")


def register(app: typer.Typer) -> None:
    """Add `apu ask` to the root app."""
    app.command("ask")(ask)


if __name__ == "__main__":
    typer.run(ask)
