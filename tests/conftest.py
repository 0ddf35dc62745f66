"""Shared fixtures: synthetic official-layout SMPL-X files (no licensed data is ever used)."""

from __future__ import annotations

import numpy as np
import pytest

from apu_jax.body.synthetic import write_synthetic_smplx


@pytest.fixture(scope="session")
def smplx_file(tmp_path_factory):
    """An official-size synthetic SMPL-X file and kid template: (model path, kid template path)."""
    folder = tmp_path_factory.mktemp("smplx")
    kid = folder / "smplx_kid_template.npy"
    path = write_synthetic_smplx(folder / "SMPLX_NEUTRAL.npz", kid_template_path=kid)
    return path, kid


@pytest.fixture(scope="session")
def small_smplx_file(tmp_path_factory):
    """A small synthetic SMPL-X-layout file (600 vertices) for fast tests that do not need smplx."""
    folder = tmp_path_factory.mktemp("smplx_small")
    return write_synthetic_smplx(folder / "SMPLX_SMALL.npz", num_vertices=600, seed=3, num_shape_dirs=20)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
