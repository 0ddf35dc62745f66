"""The `apu` command line: help everywhere, JSON output, one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
COMMANDS = [
    "demo",
    "model",
    "ask",
    "run",
    "synth",
    "fit",
    "eval",
    "filter",
    "render",
    "view",
    "analyze",
    "bench",
    "prior",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["model", "info", "/nonexistent/SMPLX_NEUTRAL.npz"],
        ["fit", "/nonexistent/pairs.npz", "--out", "/tmp/never"],
        ["eval", "/nonexistent/fits", "--pairs", "/nonexistent/pairs.npz"],
    ],
)
def test_user_mistakes_are_one_line_errors(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "not found" in result.output


def test_model_info_json(small_smplx_file):
    result = runner.invoke(app, ["model", "info", str(small_smplx_file), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["num_vertices"] == 600 and info["num_output_joints"] == 127
    assert info["regions"]["num_regions"] == len(info["regions"]["names"]) > 0


def test_model_info_names_a_missing_key(tmp_path, small_smplx_file):
    arrays = dict(np.load(small_smplx_file))
    del arrays["shapedirs"]
    np.savez(tmp_path / "broken.npz", **arrays)
    result = runner.invoke(app, ["model", "info", str(tmp_path / "broken.npz")])
    assert result.exit_code == 2 and "missing key 'shapedirs'" in result.output


def test_fit_rejects_bad_iters(tmp_path):
    (tmp_path / "p.npz").write_bytes(b"")
    result = runner.invoke(
        app, ["fit", str(tmp_path / "p.npz"), "--out", str(tmp_path / "f"), "--iters", "ten"]
    )
    assert result.exit_code == 2 and "N1,N2" in result.output
