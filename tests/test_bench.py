"""Benchmarks: the PyTorch baseline optimises the same objective as the JAX engine (the comparison is fair),
the GEMM yardstick, FLOP counts and the `bench_fit` result layout."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import apu_jax
from apu_jax.bench.flops import free_keys
from apu_jax.bench.gemm import gemm_rate
from apu_jax.body.synthetic import write_synthetic_smplx
from apu_jax.data.pairset import PairSet
from apu_jax.fit.engine import TERMS, FitStatics, FitStructure, FitWeights, loss_terms
from apu_jax.fit.gmm import gmm_from_covariances
from apu_jax.fit.interpenetration import farthest_point_sampling
from apu_jax.fit.run import pair_inputs
from apu_jax.fit.synthetic import synthetic_pairs
from apu_jax.regions import model_to_keypoint_indices

torch = pytest.importorskip("torch")
pytest.importorskip("smplx")

# Relative tolerance of the terms. Contact and interpenetration are squared (or 4th powers of) distances of a
# few mm between vertices that smplx and our model compute with float32 differences ~1e-6 m, so they agree to
# ~1e-4..1e-3 only; every other term agrees to float32 rounding.
RTOL = {"contact": 2e-3, "interpenetration": 2e-3}
DEFAULT_RTOL = 1e-4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Official-size synthetic SMPL-X (smplx needs V ≥ 9930) with 20 shape directions, hand-made statics."""
    from apu_jax.bench import torch_baseline
    from apu_jax.bench.fit_bench import closed_proxy

    folder = tmp_path_factory.mktemp("bench")
    path = write_synthetic_smplx(folder / "SMPLX_NEUTRAL.npz", seed=4, num_shape_dirs=20)
    model = apu_jax.load_model(path, num_betas=10)
    rng = np.random.default_rng(0)
    rest = np.asarray(jax.jit(lambda m: apu_jax.forward(m)["vertices"])(model))
    # Regions: 6 random vertex sets of width 12, region 2 with 5 padded entries (mask False).
    region_ids = rng.integers(0, model.num_vertices, (6, 12)).astype(np.int32)
    region_mask = np.ones((6, 12), bool)
    region_mask[2, 7:] = False
    factors = rng.normal(0, 0.3, (3, 63, 63))
    covars = factors @ factors.transpose(0, 2, 1) / 63 + 0.1 * np.eye(63)
    gmm = gmm_from_covariances(rng.normal(0, 0.2, (3, 63)), covars, [0.5, 0.3, 0.2])
    statics = FitStatics(
        region_vertex_ids=jnp.asarray(region_ids),
        region_mask=jnp.asarray(region_mask),
        keypoint_joint_ids=jnp.asarray(model_to_keypoint_indices("body25")),
        gmm=gmm,
        proxy=closed_proxy(model, 60),
        query_ids=jnp.asarray(farthest_point_sampling(rest, 48)),
    )
    arrays = synthetic_pairs(model, 2, seed=3)
    # Contacts: a plain pair, the partly padded region, padding.
    arrays["contact_pairs"][:] = [[0, 1], [2, 3], [-1, -1], [-1, -1]]
    arrays["contact_weights"][:] = [1.0, 0.5, 0.0, 0.0]
    # People 3 cm apart so that both bodies penetrate each other (the interpenetration term is non-zero).
    arrays["init_transl"][:, 1] = arrays["init_transl"][:, 0] + [0.03, 0.0, 0.0]
    inputs = pair_inputs(PairSet(arrays=arrays, meta={}), np.arange(2), model.num_betas)
    return dict(
        model=model,
        statics=statics,
        inputs=inputs,
        torch_setup=torch_baseline.make_setup(path, statics),
        weights=FitWeights.defaults(),
    )


def _params(pair, scale: float = 1.0):
    return {
        "global_orient": pair.global_orient,
        "body_pose": pair.body_pose * scale,
        "betas": pair.betas,
        "transl": pair.transl,
    }


@pytest.mark.parametrize("stage", [0, 1])
def test_torch_terms_and_gradient_equal_jax(setup, stage):
    """Same terms, same weighted gradient (→ same Adam steps): the benchmark compares like with like."""
    from apu_jax.bench import torch_baseline

    structure, weights = FitStructure(), setup["weights"]
    keys = free_keys(structure, stage)
    for index in range(2):
        pair = jax.tree_util.tree_map(lambda a, i=index: a[i], setup["inputs"])
        params = _params(pair, 1.1)  # away from the init pose so that the init-pose term is non-zero

        def total(free, params=params, pair=pair):
            merged = {**params, **free}
            terms = loss_terms(
                merged, pair.body_pose, setup["model"], setup["statics"], pair, weights, structure, stage
            )
            return sum(getattr(weights, n)[stage] * terms[n] for n in TERMS), terms

        (_, ours), grads = jax.jit(jax.value_and_grad(total, has_aux=True))({k: params[k] for k in keys})
        tensors = {k: torch.tensor(np.asarray(v)).requires_grad_(k in keys) for k, v in params.items()}
        theirs = torch_baseline.loss_terms(
            setup["torch_setup"],
            tensors,
            torch.tensor(np.asarray(pair.body_pose)),
            torch_baseline.pair_tensors(setup["inputs"], index),
            structure,
            stage,
            contact_rho=float(weights.contact_rho),
        )
        for name in TERMS:
            a, b = float(ours[name]), float(theirs[name].detach())
            assert np.isclose(a, b, rtol=RTOL.get(name, DEFAULT_RTOL), atol=0.0), (name, stage, a, b)
        assert float(ours["contact"]) > 0 and float(ours["init_pose"]) > 0
        # The interpenetration term exists in stage 2 only, and the setup makes it non-zero there.
        assert (float(ours["interpenetration"]) > 0) == (stage == 1)

        sum(float(np.asarray(getattr(weights, n))[stage]) * theirs[n] for n in TERMS).backward()
        for key in keys:
            a, b = np.asarray(grads[key]), tensors[key].grad.numpy()
            scale = np.abs(a).max()
            assert scale > 0
            assert np.abs(a - b).max() <= 2e-3 * scale, (key, stage, np.abs(a - b).max(), scale)


def test_torch_fit_pair_runs_both_stages(setup):
    """The baseline's schedule: stage-1 moves betas, stage 2 keeps them; histories have the set lengths."""
    from apu_jax.bench import torch_baseline

    pair = torch_baseline.pair_tensors(setup["inputs"], 0)
    out = torch_baseline.fit_pair(setup["torch_setup"], pair, setup["weights"], FitStructure(iters=(3, 2)))
    assert out["loss_history_stage1"].shape == (3,) and out["loss_history_stage2"].shape == (2,)
    assert not np.allclose(out["betas"], pair["betas"].numpy())
    assert np.all(np.isfinite(out["body_pose"]))
    assert out["loss_history_stage1"][-1] < out["loss_history_stage1"][0]


def test_gemm_rate_is_positive_and_finite():
    rate = gemm_rate(size=128, repeats=2)
    assert np.isfinite(rate["flops_per_s"]) and rate["flops_per_s"] > 0
    assert rate["best_flops_per_s"] >= rate["flops_per_s"]
    assert np.isclose(rate["flops_per_s"], 2 * 128**3 / rate["median_s"])


def test_memory_plan_slope():
    from apu_jax.bench.fit_bench import GPU_BYTES, PLAN_PAIRS, memory_plan

    def row(size, temp, argument):
        total = temp + argument + 100
        memory = dict(
            temp_bytes=temp, argument_bytes=argument, output_bytes=100, alias_bytes=0, total_bytes=total
        )
        return {"batch_size": size, "memory": memory}

    # 1000 fixed bytes of arguments; 5 MB of temporaries and 1 kB of inputs per pair.
    rows = [row(b, 5_000_000 * b, 1000 + 1000 * b) for b in (1, 4, 16)]
    plan = memory_plan(rows)
    assert plan["from_batch_sizes"] == [4, 16]
    assert plan["bytes_per_pair"] == 5_001_000 and plan["temp_bytes_per_pair"] == 5_000_000
    assert plan["fixed_bytes"] == 1100
    assert plan["pairs_in_budget"] == int((GPU_BYTES - 1100) // 5_001_000)
    assert plan[f"fits_{PLAN_PAIRS}_pairs"] is True
    assert memory_plan(rows[:1]) is None


@pytest.mark.slow
def test_bench_fit_result_keys(tmp_path):
    """A real (tiny) run: two fit compiles and the FLOP analysis; interpenetration off to compile faster."""
    from apu_jax.bench.fit_bench import bench_fit

    result = bench_fit(
        n_pairs=2,
        iters=(1, 1),
        batch_sizes=(1, 2),
        baseline_pairs=0,
        num_vertices=600,
        work_dir=tmp_path,
        gemm_size=128,
        use_interpenetration=False,
    )
    for key in ("pairs_per_s", "baseline_pairs_per_s", "speedup", "gemm_fraction", "bytes_per_pair"):
        assert key in result
    assert result["pairs_per_s"] > 0 and result["baseline_pairs_per_s"] is None
    assert [row["batch_size"] for row in result["sweep"]] == [1, 2]
    assert result["bytes_per_pair"] > 0 and 0 < result["gemm_fraction"]
    assert result["memory_plan"]["from_batch_sizes"] == [1, 2]
    # (1 + 1) iterations: the fit's FLOPs are the two stages' per-iteration counts.
    flops = result["flops"]
    assert flops["fit_flops_per_pair"] == flops["stage1"]["xla"]["flops"] + flops["stage2"]["xla"]["flops"]
    # The hand count explains XLA's count in each stage (body-model GEMMs, contact, interpenetration).
    for stage in ("stage1", "stage2"):
        assert 0.9 < flops[stage]["hand"]["total"] / flops[stage]["xla"]["flops"] < 1.1, stage
    assert flops["stage2"]["hand"]["interpenetration_winding"] == 0
    assert flops["stage1"]["hand"]["contact"] > 0
    # Pose correctives: 2 people x (forward + backward) x 2·486·3V.
    assert flops["stage1"]["hand"]["body_pose_correctives"] == 2 * 2 * 2 * 486 * 3 * 600
    assert result["settings"]["iters"] == [1, 1] and result["machine"]["matmul_precision"] == "highest"


def test_cli_rejects_bad_arguments():
    from cli.app import app

    runner = CliRunner()
    for args in (["--batch-size", "0"], ["--iters", "3"], ["--batch-size", "a,b"]):
        result = runner.invoke(app, ["bench", "fit", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output


def test_structure_helpers():
    assert free_keys(FitStructure(), 0) == ["body_pose", "transl", "betas"]
    assert free_keys(dataclasses.replace(FitStructure(), optimise_global_orient=True), 1) == [
        "body_pose",
        "transl",
        "global_orient",
    ]
