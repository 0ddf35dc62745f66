"""Transformer denoiser (flax linen) predicting the clean pair x₀ from a noisy one, in the spirit of BUDDI.

Tokens of one pair: 8 parameter tokens (4 groups × 2 people) + 1 timestep token, and for a conditional model
8 more condition tokens (the initial estimate, same layout). Each token is its group's MLP embedding plus a
learned person embedding and a learned parameter-type embedding (no positional encoding: the embeddings say
what a token is). Condition tokens also get a learned "condition" role embedding; a dropped condition token
(guidance dropout) is replaced by a learned null token, so the same network also runs unconditioned.
Pre-LN encoder blocks; each sample token's output goes through its group's MLP head to x̂₀.

The module is written for ONE pair; batch with `jax.vmap` (see `apply_denoiser`).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from apu_jax.prior.representation import GROUPS, PairX0, group_sizes


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of the denoiser: all static (it decides shapes)."""

    num_betas: int = 11  # B, shape coefficients per person (10 + kid coefficient for SMPL-XA)
    width: int = 152  # token width d
    depth: int = 6  # encoder blocks
    heads: int = 8  # attention heads (width must divide evenly)
    mlp_dim: int = 500  # hidden size of each block's feed-forward layer
    dropout: float = 0.1  # dropout rate inside the encoder blocks (training only)
    conditional: bool = False  # whether condition tokens (initial estimate) exist

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DenoiserConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of a (possibly fractional) step index.

    Args:
        t: () step index.
        dim: even embedding size.
    Returns:
        (dim,) [cos(t·f_k), sin(t·f_k)] with f_k = max_period^(−k/(dim/2)).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = jnp.asarray(t, jnp.float32) * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)])


class _MLP(nn.Module):
    """Linear → SiLU → Linear."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.out, name="output")(nn.silu(nn.Dense(self.hidden, name="hidden")(x)))


class _GroupMLP(nn.Module):
    """One Linear → SiLU → Linear per parameter group, all groups in one batched einsum.

    Groups have different feature sizes; inputs are zero-padded to the largest, so a handful of large ops
    replace one small MLP per group (far fewer kernels to compile, the same function: padded input rows
    multiply zeros, padded outputs are sliced away).
    """

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., G, in) → (..., G, out)."""
        groups, size_in = x.shape[-2:]
        zeros = nn.initializers.zeros
        w1 = self.param("hidden_kernel", nn.initializers.lecun_normal(), (groups, size_in, self.hidden))
        b1 = self.param("hidden_bias", zeros, (groups, self.hidden))
        w2 = self.param("output_kernel", nn.initializers.lecun_normal(), (groups, self.hidden, self.out))
        b2 = self.param("output_bias", zeros, (groups, self.out))
        h = nn.silu(jnp.einsum("...gi,gih->...gh", x, w1) + b1)
        return jnp.einsum("...gh,gho->...go", h, w2) + b2


def pack_groups(x: PairX0) -> jax.Array:
    """`PairX0` → (2, 4, D) with every group zero-padded to D = the largest group size (the pose, 126)."""
    width = max(getattr(x, g).shape[-1] for g in GROUPS)
    padded = [
        jnp.pad(getattr(x, g), [(0, 0)] * (getattr(x, g).ndim - 1) + [(0, width - getattr(x, g).shape[-1])])
        for g in GROUPS
    ]
    return jnp.stack(padded, axis=-2)


def unpack_groups(packed: jax.Array, num_betas: int) -> PairX0:
    """(2, 4, D) → `PairX0`, dropping each group's padding."""
    sizes = group_sizes(num_betas)
    return PairX0(**{g: packed[..., k, : sizes[g]] for k, g in enumerate(GROUPS)})


class _Block(nn.Module):
    """Pre-LN transformer encoder block (scan-compatible signature: carry in, (carry, None) out)."""

    heads: int
    mlp_dim: int
    dropout: float

    deterministic: bool

    @nn.compact
    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        attention = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, deterministic=True, name="attention"
        )
        h = attention(nn.LayerNorm(name="norm_attention")(x))
        x = x + nn.Dropout(self.dropout)(h, deterministic=self.deterministic)
        h = nn.Dense(self.mlp_dim, name="mlp_hidden")(nn.LayerNorm(name="norm_mlp")(x))
        h = nn.Dense(x.shape[-1], name="mlp_output")(nn.gelu(h))
        return x + nn.Dropout(self.dropout)(h, deterministic=self.deterministic), None


class Denoiser(nn.Module):
    """x̂₀ = f(x_t, t, condition) for one pair."""

    config: DenoiserConfig

    @nn.compact
    def __call__(
        self,
        x_t: PairX0,
        t: jax.Array,
        cond: PairX0 | None = None,
        cond_keep: jax.Array | None = None,
        deterministic: bool = True,
    ) -> PairX0:
        """Predict the clean pair.

        Args:
            x_t: noisy `PairX0` (person axis first, no batch axis).
            t: () step index.
            cond: `PairX0` initial estimate (required iff config.conditional).
            cond_keep: (2, 4) bool, which condition tokens are visible (person × group); default all.
            deterministic: False during training (enables dropout; needs a 'dropout' rng).
        Returns:
            `PairX0` prediction of x₀.
        """
        cfg = self.config
        d = cfg.width
        sizes = group_sizes(cfg.num_betas)
        person_emb = self.param("person_embedding", nn.initializers.normal(0.02), (2, d))
        type_emb = self.param("type_embedding", nn.initializers.normal(0.02), (len(GROUPS), d))

        def embed(name: str, tree: PairX0) -> jax.Array:
            # (2, 4, d): one token per person and group, identity added by the learned embeddings.
            tokens = _GroupMLP(d, d, name=name)(pack_groups(tree))
            return tokens + person_emb[:, None, :] + type_emb[None, :, :]

        sample_tokens = embed("embed", x_t).reshape(2 * len(GROUPS), d)
        time_token = _MLP(d, d, name="embed_time")(timestep_embedding(t, d))[None, :]
        tokens = [sample_tokens, time_token]
        if cfg.conditional:
            if cond is None:
                raise ValueError("a conditional denoiser needs `cond` (pass cond_keep=False to drop it)")
            role = self.param("condition_embedding", nn.initializers.normal(0.02), (d,))
            null = self.param("null_condition", nn.initializers.normal(0.02), (len(GROUPS), d))
            cond_tokens = embed("cond", cond)
            null_tokens = null[None, :, :] + person_emb[:, None, :] + type_emb[None, :, :]
            keep = jnp.ones((2, len(GROUPS)), bool) if cond_keep is None else cond_keep
            cond_tokens = jnp.where(keep[..., None], cond_tokens, null_tokens) + role
            tokens.append(cond_tokens.reshape(2 * len(GROUPS), d))
        x = jnp.concatenate(tokens, axis=0)
        # One block traced once and scanned over depth (weights stacked on a leading axis): compile time
        # does not grow with depth.
        blocks = nn.scan(
            _Block,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            length=cfg.depth,
        )
        x, _ = blocks(cfg.heads, cfg.mlp_dim, cfg.dropout, deterministic, name="blocks")(x, None)
        x = nn.LayerNorm(name="final_norm")(x)
        out = x[: 2 * len(GROUPS)].reshape(2, len(GROUPS), d)
        return unpack_groups(_GroupMLP(d, max(sizes.values()), name="head")(out), cfg.num_betas)


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal samples redrawn until inside ±2 std (the truncated normal of flax's lecun_normal)."""
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * std


def init_denoiser_params(config: DenoiserConfig, key: jax.Array | int) -> dict:
    """Fresh float32 parameters for a denoiser with this config.

    The tree's structure and shapes come from `jax.eval_shape` of the flax init (nothing compiled); the
    values are drawn with numpy using flax's default rules (kernels: lecun-normal on the fan-in, truncated
    at 2σ; biases 0; LayerNorm scales 1; learned embeddings N(0, 0.02²)). A compiled flax init of this
    network takes ~15 s on a small CPU, which dominated short runs and tests.

    Args:
        config: architecture.
        key: a PRNG key or an int seed.
    """
    sizes = group_sizes(config.num_betas)
    dummy = PairX0(**{g: jnp.zeros((2, sizes[g]), jnp.float32) for g in GROUPS})
    cond = dummy if config.conditional else None
    shapes = jax.eval_shape(
        lambda k: Denoiser(config).init(k, dummy, jnp.zeros((), jnp.int32), cond)["params"],
        jax.random.PRNGKey(0),
    )
    seed = (
        key
        if isinstance(key, int)
        else np.asarray(jax.random.key_data(key) if is_typed_key(key) else key).tolist()
    )
    rng = np.random.default_rng(seed)
    flat = traverse_util.flatten_dict(shapes)
    params = {}
    for path, leaf in sorted(flat.items()):
        shape, name = tuple(leaf.shape), path[-1]
        if name in ("bias", "hidden_bias", "output_bias"):
            value = np.zeros(shape)
        elif name == "hidden_kernel" and path[0] in ("embed", "cond"):
            # (4, D, d) on zero-padded inputs: each group's fan-in is its real size, padded rows are 0.
            value = np.zeros(shape)
            for k, g in enumerate(GROUPS):
                n_in = sizes[g]
                value[k, :n_in] = _truncated_normal(
                    rng, (n_in, shape[-1]), 1.0 / math.sqrt(n_in) / 0.8796256610342398
                )
        elif name in ("hidden_kernel", "output_kernel"):
            value = _truncated_normal(rng, shape, 1.0 / math.sqrt(shape[-2]) / 0.8796256610342398)
        elif name == "scale":
            value = np.ones(shape)
        elif name == "kernel":
            if "attention" in path and path[-2] == "out":
                fan_in = shape[-3] * shape[-2]  # (…, heads, head_dim, width)
            elif "attention" in path:
                fan_in = shape[-3]  # query/key/value: (…, width, heads, head_dim)
            else:
                fan_in = shape[-2]  # Dense: (…, in, out)
            value = _truncated_normal(rng, shape, 1.0 / math.sqrt(fan_in) / 0.8796256610342398)
        else:  # learned embeddings and null tokens
            value = rng.normal(0.0, 0.02, shape)
        params[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(params)


def is_typed_key(key: jax.Array) -> bool:
    """Whether `key` is a new-style typed PRNG key (else a raw uint32 array)."""
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def apply_denoiser(
    config: DenoiserConfig,
    params: dict,
    x_t: PairX0,
    t: jax.Array,
    cond: PairX0 | None = None,
    cond_keep: jax.Array | None = None,
    dropout_key: jax.Array | None = None,
) -> PairX0:
    """Run the denoiser on one pair (vmap this for batches). Dropout is on iff `dropout_key` is given."""
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    return Denoiser(config).apply(
        {"params": params}, x_t, t, cond, cond_keep, deterministic=dropout_key is None, rngs=rngs
    )
