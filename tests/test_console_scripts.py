"""Every console script as a user runs it, in its own process: exit 0 on success, and a non-zero
exit with a one-line `PROG: error: ...` message on a user error (openuni-sample and
openuni-export used to exit 1 after succeeding, returning their results to the console-script
wrapper)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.shard_fixtures import model_cache  # noqa: F401  (pytest fixture)

from tests.conftest import tiny_config

BIN = Path(sys.executable).parent


def run(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"OPENUNI_MODEL_CACHE": str(cache)} if cache else {})}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=600, env=env)


def one_line_error(done: subprocess.CompletedProcess, prog: str) -> None:
    assert done.returncode != 0, done.stdout[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("console")
    done = run("openuni-build", "--source", "synthetic", "--limit", "2", "--shards", str(tmp / "out"),
               "--config", str(tiny_config(tmp)), "--no-progress")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "clips written" in done.stdout
    return tmp / "out"


def test_build_and_models(built, tmp_path):
    one_line_error(run("openuni-build", "--source", "manifest", "--input", str(tmp_path / "missing.csv"),
                       "--shards", str(tmp_path / "o"), "--no-progress"), "openuni-build")
    assert run("openuni-models", "list").returncode == 0
    assert run("openuni-models", "pull", "no-such-model").returncode != 0


def test_eval_balance_export(built, tmp_path):
    done = run("openuni-eval", str(built))
    assert done.returncode == 0 and "flow" in done.stdout, done.stderr[-3000:]
    one_line_error(run("openuni-eval", str(tmp_path)), "openuni-eval")
    assert run("openuni-balance", str(built), "--target", "1", "--keys", "source").returncode == 0
    one_line_error(run("openuni-balance", str(tmp_path), "--target", "1"), "openuni-balance")
    done = run("openuni-export", "--format", "unityvideo", str(built), str(tmp_path / "unity"))
    assert done.returncode == 0 and "raft" in done.stdout, done.stderr[-3000:]
    (tmp_path / "empty" / "shards").mkdir(parents=True)
    one_line_error(run("openuni-export", "--format", "unityvideo", str(tmp_path / "empty"), str(tmp_path / "u2")),
                   "openuni-export")


def test_train_and_sample(built, tmp_path, model_cache):  # noqa: F811
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"hidden": 48, "depth": 1, "heads": 4, "patch": [1, 4, 4]},
        "data": {"num_frames": 5, "height": 16, "width": 16, "batch_size": 2, "shuffle": 2, "modalities": ["flow"]},
        "train": {"steps": 2, "lr": 2e-3, "warmup": 1, "log_every": 1, "ckpt_every": 2, "ema_decay": 0.9}}))
    done = run("openuni-train", "--shards", str(built / "shards"), "--config", str(config), "--out",
               str(tmp_path / "run"), "--device", "cpu", cache=model_cache)
    assert done.returncode == 0, done.stderr[-3000:]
    one_line_error(run("openuni-train", "--shards", str(tmp_path / "nothing"), "--config", str(config), "--out",
                       str(tmp_path / "run2"), "--device", "cpu", cache=model_cache), "openuni-train")
    done = run("openuni-sample", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--task", "est",
               "--shards", str(built / "shards"), "--steps", "2", "--out", str(tmp_path / "samples"),
               "--device", "cpu", cache=model_cache)
    assert done.returncode == 0 and ".mp4" in done.stdout, done.stderr[-3000:]
    one_line_error(run("openuni-sample", "--checkpoint", str(tmp_path / "none.pt"), "--task", "est",
                       "--shards", str(built / "shards"), "--device", "cpu", cache=model_cache), "openuni-sample")
