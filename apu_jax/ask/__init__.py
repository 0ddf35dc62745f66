"""Ask: which body parts of two people touch, from an LVLM (or offline baselines), as soft contact maps.

Stages (docs/ASK.md): `proposal` (candidate pairs) → `image` + `prompt` (what the model sees) →
`providers` + `runner` (async, cached, rate-limited requests) → `schema` (validated answers) → `denoise`
(laterality, voting, soft contact map) → `stage.run_ask` (manifest → pair set) → `pipeline.run_pipeline`
(ask → fit → export).
"""

from apu_jax.ask.denoise import DenoiseConfig, ResolvedContact, resolve_laterality, soft_contact_map, vote
from apu_jax.ask.pipeline import run_pipeline
from apu_jax.ask.prompt import PROMPT_VERSION, SYSTEM_PROMPT
from apu_jax.ask.proposal import Candidate, ProposalConfig, propose_pairs
from apu_jax.ask.providers import PROVIDERS, AskRequest, Provider, ProviderError, ProviderFatal, make_provider
from apu_jax.ask.schema import AnswerError, Contact, ContactAnswer, answer_json_schema, parse_answer
from apu_jax.ask.stage import AskOptions, run_ask

__all__ = [
    "PROMPT_VERSION",
    "PROVIDERS",
    "SYSTEM_PROMPT",
    "AnswerError",
    "AskOptions",
    "AskRequest",
    "Candidate",
    "Contact",
    "ContactAnswer",
    "DenoiseConfig",
    "ProposalConfig",
    "Provider",
    "ProviderError",
    "ProviderFatal",
    "ResolvedContact",
    "answer_json_schema",
    "make_provider",
    "parse_answer",
    "propose_pairs",
    "resolve_laterality",
    "run_ask",
    "run_pipeline",
    "soft_contact_map",
    "vote",
]
