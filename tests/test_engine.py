"""The fit engine: stages, loss decrease, recovery, traced weights, vmap, resume, bad input, sharding."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import apu_jax
from apu_jax.data.pairset import load_fits, save_pairset
from apu_jax.fit.engine import TERMS, FitStructure, FitWeights, fit_batch
from apu_jax.fit.gmm import save_gmm_npz
from apu_jax.fit.run import build_statics, fit_pairset, pair_inputs
from apu_jax.fit.synthetic import synthetic_pairs

STRUCTURE = FitStructure(iters=(25, 8))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from apu_jax.body.synthetic import write_synthetic_smplx

    folder = tmp_path_factory.mktemp("engine")
    model = apu_jax.load_model(
        write_synthetic_smplx(folder / "model.npz", num_vertices=2000, seed=5, num_shape_dirs=10)
    )
    gmm_path = folder / "gmm.npz"
    # A broad single-mode prior: it must not fight the synthetic poses.
    save_gmm_npz(gmm_path, np.zeros((2, 63)), np.stack([np.eye(63)] * 2), np.array([0.5, 0.5]), {})
    arrays = synthetic_pairs(model, 4, seed=1)
    pairs_path = folder / "pairs.npz"
    save_pairset(pairs_path, **arrays)
    statics = build_statics(model, "body25", gmm=gmm_path, num_query_vertices=64, num_proxy_vertices=200)
    from apu_jax.data.pairset import load_pairset

    pairs = load_pairset(pairs_path)
    inputs = pair_inputs(pairs, np.arange(4), model.num_betas)
    result = jax.device_get(fit_batch(model, statics, inputs, FitWeights.defaults(), STRUCTURE))
    return dict(
        model=model,
        statics=statics,
        inputs=inputs,
        result=result,
        arrays=arrays,
        folder=folder,
        pairs_path=pairs_path,
        gmm=gmm_path,
    )


def test_loss_decreases_in_each_stage(setup):
    r = setup["result"]
    assert r["loss_history_stage1"].shape == (4, 25)
    assert np.all(r["loss_history_stage1"][:, -1] < r["loss_history_stage1"][:, 0])
    assert np.all(np.isfinite(r["loss_history_stage2"]))


def test_stage_switch(setup):
    r = setup["result"]
    penetration = TERMS.index("interpenetration")
    # Stage 1 has no interpenetration term, stage 2 has (weight 1000 by default, 0 in stage 1).
    assert np.all(r["terms_stage1"][:, penetration] == 0)
    # Betas are fixed in stage 2: the stage-2 shape term (weight 0) is 0 and betas moved only in stage 1.
    assert np.all(r["terms_stage2"][:, TERMS.index("shape")] == 0)
    assert not np.allclose(r["betas"], np.asarray(setup["inputs"].betas))


def test_fit_moves_bodies_towards_ground_truth(setup):
    model, r, a = setup["model"], setup["result"], setup["arrays"]
    fitted = np.asarray(
        apu_jax.forward(model, **{k: r[k] for k in ("global_orient", "body_pose", "betas", "transl")})[
            "joints"
        ]
    )
    init = np.asarray(
        apu_jax.forward(
            model, **{k: a[f"init_{k}"] for k in ("global_orient", "body_pose", "betas", "transl")}
        )["joints"]
    )
    err = lambda j: np.linalg.norm(j[:, :, :22] - a["gt_joints"][:, :, :22], axis=-1).mean()  # noqa: E731
    assert err(fitted) < 0.8 * err(init)
    # The keypoint reprojection error (the filter's metric) drops for every person.
    from apu_jax.fit.camera import default_camera, project
    from apu_jax.fit.losses import keypoint_reprojection_error
    from apu_jax.regions import model_to_keypoint_indices

    init_2d = project(default_camera(1280, 720), init[:, :, model_to_keypoint_indices("body25")])
    init_err = jax.vmap(jax.vmap(keypoint_reprojection_error))(init_2d, a["keypoints"])
    assert np.all(r["reproj_error"] < np.asarray(init_err))


def test_interpenetration_refresh_searches_once_per_block(setup):
    """Refreshing the inside test every k stage-2 steps: the first stage-2 step sees the same search as
    refreshing every step, so the first losses agree exactly; the results differ only slightly."""
    model, statics, pairs = setup["model"], setup["statics"], setup["inputs"]
    # Start person 1 25 cm from person 0 so that the bodies overlap a little and the term is active.
    transl = np.asarray(pairs.transl).copy()
    transl[:, 1] = transl[:, 0] + np.array([0.25, 0.0, 0.0])
    pairs = pairs.replace(transl=jax.numpy.asarray(transl))
    weights = FitWeights.defaults()
    every = fit_batch(
        model, statics, pairs, weights, dataclasses.replace(STRUCTURE, interpenetration_refresh=1)
    )
    blocks = fit_batch(
        model, statics, pairs, weights, dataclasses.replace(STRUCTURE, interpenetration_refresh=3)
    )
    h_every, h_blocks = np.asarray(every["loss_history_stage2"]), np.asarray(blocks["loss_history_stage2"])
    assert np.any(np.asarray(every["terms_stage2"])[:, TERMS.index("interpenetration")] > 0)
    assert h_blocks.shape == h_every.shape == (len(h_every), STRUCTURE.iters[1])  # 8 = 2 blocks of 3 + 2
    np.testing.assert_allclose(h_blocks[:, 0], h_every[:, 0], rtol=1e-6)
    # Each block starts with a fresh search, so the losses there agree closely again (in between, stale
    # nearest vertices can keep a vertex that has just left the other body penalised for a few steps).
    np.testing.assert_allclose(h_blocks[:, [3, 6]], h_every[:, [3, 6]], rtol=2e-2)
    np.testing.assert_allclose(np.asarray(blocks["body_pose"]), np.asarray(every["body_pose"]), atol=1e-2)


def test_weights_are_traced_no_recompile(setup):
    s = setup
    before = fit_batch._cache_size()
    changed = FitWeights.defaults(contact=3.0, keypoints=0.05, filter_threshold=1e-3)
    r = jax.device_get(fit_batch(s["model"], s["statics"], s["inputs"], changed, STRUCTURE))
    assert fit_batch._cache_size() == before
    assert not np.any(r["keep"])  # the traced threshold took effect
    assert not np.allclose(r["body_pose"], s["result"]["body_pose"])


def test_vmap_matches_single_pair(setup):
    s = setup
    one = jax.tree.map(lambda x: x[2:3], s["inputs"])
    r = jax.device_get(fit_batch(s["model"], s["statics"], one, FitWeights.defaults(), STRUCTURE))
    np.testing.assert_allclose(r["body_pose"][0], s["result"]["body_pose"][2], atol=2e-4)
    np.testing.assert_allclose(r["transl"][0], s["result"]["transl"][2], atol=2e-5)


def test_contact_term_pulls_regions_together(setup):
    s = setup
    no_contact = FitStructure(iters=STRUCTURE.iters, use_contact=False)
    far = jax.device_get(fit_batch(s["model"], s["statics"], s["inputs"], FitWeights.defaults(), no_contact))
    near = jax.device_get(
        # Plain d² (no robust saturation): this checks the pull itself; robustness is unit-tested.
        fit_batch(
            s["model"],
            s["statics"],
            s["inputs"],
            FitWeights.defaults(contact=50.0, contact_rho=1e4),
            STRUCTURE,
        )
    )
    from apu_jax.regions import load_regions, region_pair_min_distance

    regions = load_regions(s["model"])

    def gap(r):
        verts = np.asarray(
            apu_jax.forward(
                s["model"], **{k: r[k] for k in ("global_orient", "body_pose", "betas", "transl")}
            )["vertices"]
        )
        return np.array(
            [float(region_pair_min_distance(v[0], v[1], regions, np.array([[3, 5]]))[0]) for v in verts]
        )

    assert np.mean(gap(near)) < 0.7 * np.mean(gap(far))


def test_bad_pairs_are_reported_and_the_run_goes_on_then_resumes(setup, tmp_path):
    s = setup
    arrays = dict(s["arrays"])
    arrays["keypoints"] = arrays["keypoints"].copy()
    arrays["keypoints"][1, 0, 3, 0] = np.nan
    arrays["contact_pairs"] = arrays["contact_pairs"].copy()
    arrays["contact_pairs"][2, 0, 0] = 9999
    path = tmp_path / "bad.npz"
    save_pairset(path, **arrays)
    out = tmp_path / "fits"
    kwargs = dict(model=s["model"], structure=STRUCTURE, batch_size=2, gmm=s["gmm"])
    summary = fit_pairset(path, out, **kwargs)
    fits = load_fits(out)
    assert summary["n_errors"] == 2 and summary["n_fitted"] == 2
    assert "NaN" in fits["error"][1] and "region id" in fits["error"][2]
    assert not fits["keep"][1] and not fits["keep"][2]
    np.testing.assert_array_equal(fits["body_pose"][1], arrays["init_body_pose"][1])
    # A crash after the first shard: remove the second shard, rerun, only its pairs are fitted again.
    first_shard = dict(np.load(out / "shard-00000.npz"))
    (out / "shard-00001.npz").unlink()
    again = fit_pairset(path, out, **kwargs)
    assert again["n_skipped_done"] == 2 and again["n_fitted"] == 1
    fits = load_fits(out)
    assert sorted(fits["pair_id"].tolist()) == sorted(arrays["pair_id"].tolist())
    np.testing.assert_array_equal(np.load(out / "shard-00000.npz")["body_pose"], first_shard["body_pose"])
    # Refitting into the same folder with other settings is refused, not silently mixed.
    with pytest.raises(ValueError, match="other settings"):
        fit_pairset(path, out, **{**kwargs, "weights": FitWeights.defaults(contact=2.0)})


def test_sharding_over_forced_host_devices(setup, tmp_path):
    s = setup
    script = textwrap.dedent(
        f"""
        import json, numpy as np, jax
        import apu_jax
        from apu_jax.fit.engine import FitStructure
        from apu_jax.fit.run import fit_pairset
        from apu_jax.data.pairset import load_fits
        assert len(jax.local_devices()) == 4
        model = apu_jax.load_model({str(s["folder"] / "model.npz")!r})
        summary = fit_pairset({str(s["pairs_path"])!r}, {str(tmp_path / "fits")!r}, model=model,
                              structure=FitStructure(iters={STRUCTURE.iters!r}), batch_size=3,
                              gmm={str(s["gmm"])!r})
        fits = load_fits({str(tmp_path / "fits")!r})
        print(json.dumps({{"batch": summary["batch_size"], "pose": fits["body_pose"].tolist()}}))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["batch"] == 4  # padded up to a multiple of the 4 devices
    # The fit-engine statics in the subprocess use the default proxy/query sizes, so compare loosely.
    np.testing.assert_allclose(np.asarray(out["pose"]), s["result"]["body_pose"], atol=0.05)


def test_prior_guided_fit_uses_the_prior_term(setup):
    from apu_jax.prior.denoiser import DenoiserConfig, init_denoiser_params
    from apu_jax.prior.guidance import PriorModel
    from apu_jax.prior.schedule import cosine_schedule

    s = setup
    config = DenoiserConfig(
        num_betas=s["model"].num_betas, width=16, depth=1, heads=2, mlp_dim=16, dropout=0.0
    )
    prior = PriorModel(
        params=init_denoiser_params(config, jax.random.PRNGKey(0)),
        schedule=cosine_schedule(1000),
        config=config,
    )
    statics = s["statics"].replace(prior=prior)
    guided = FitStructure(iters=(6, 3), use_contact=False, use_gmm=False, use_prior=True)
    on = jax.device_get(fit_batch(s["model"], statics, s["inputs"], FitWeights.defaults(), guided))
    off = jax.device_get(fit_batch(s["model"], statics, s["inputs"], FitWeights.defaults(prior=0.0), guided))
    prior_term = TERMS.index("prior")
    assert np.all(np.isfinite(on["terms_stage1"][:, prior_term])) and np.all(
        on["terms_stage1"][:, prior_term] > 0
    )
    assert np.all(off["terms_stage1"][:, prior_term] == 0)
    assert not np.allclose(on["body_pose"], off["body_pose"])  # the (traced) guidance weight takes effect
    assert np.all(np.isfinite(on["loss_history_stage1"]))
