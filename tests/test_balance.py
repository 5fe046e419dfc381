"""Balancing: exact quotas, water-filling, determinism, byte-identical copies and the CLI."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

from openuni_builder.commands.balance import main
from openuni_builder.config import BalanceConfig, BalanceError
from openuni_builder.publish.balance import balance, bucket_of, quotas, select


def row(key: str, source: str = "koala36m", human: bool | None = None, motion: float | None = None) -> dict:
    filters = {}
    if human is not None:
        filters["person"] = {"human": human}
    if motion is not None:
        filters["motion"] = {"mean": motion}
    return {"key": key, "source": source, "filters": filters}


def rows_for(sizes: dict[tuple[str, bool, float], int]) -> list[dict]:
    rows = []
    for (source, human, motion), n in sizes.items():
        rows += [row(f"{source}-{human}-{motion}-{i:03d}", source, human, motion) for i in range(n)]
    return rows


def test_bucket_labels_from_source_person_and_motion():
    cfg = BalanceConfig(target=1)
    assert bucket_of(row("a", "panda70m", True, 0.1), cfg) == "panda70m/human/static"
    assert bucket_of(row("a", "panda70m", False, 0.5), cfg) == "panda70m/non-human/moderate"
    assert bucket_of(row("a", "panda70m", False, 7.0), cfg) == "panda70m/non-human/dynamic"
    assert bucket_of(row("a"), cfg) == "koala36m/unknown/unknown"
    assert bucket_of(row("a", "x", True, 3.0), BalanceConfig(target=1, keys=("content",))) == "human"


def test_even_split_is_exact_and_water_fills_small_buckets():
    # Target 30 over 3 buckets: 10 each, but one bucket has only 4 -> its 6 go to the others.
    assert quotas({"a": 100, "b": 4, "c": 50}, BalanceConfig(target=30)) == {"a": 13, "b": 10, "c": 13}
    rows = rows_for({("koala36m", True, 3.0): 100, ("koala36m", False, 3.0): 4, ("panda70m", False, 0.1): 50})
    chosen, report = select(rows, BalanceConfig(target=30))
    assert len(chosen) == 30
    after = {b: v["after"] for b, v in report["buckets"].items()}
    assert after == {"koala36m/human/dynamic": 13, "koala36m/non-human/dynamic": 4, "panda70m/non-human/static": 13}
    assert report["total"] == {"before": 154, "after": 30}
    # A remainder goes to the larger buckets; a target above the data keeps everything.
    assert quotas({"a": 100, "b": 100, "c": 100}, BalanceConfig(target=10)) == {"a": 3, "b": 3, "c": 4}
    assert len(select(rows, BalanceConfig(target=1000))[0]) == 154


def test_explicit_quotas_are_exact():
    rows = rows_for({("koala36m", True, 3.0): 20, ("panda70m", True, 3.0): 20})
    cfg = BalanceConfig(quotas={"koala36m/human/dynamic": 7, "panda70m/human/dynamic": 2, "nobody/human/dynamic": 5})
    chosen, report = select(rows, cfg)
    assert len(chosen) == 9
    assert report["buckets"]["koala36m/human/dynamic"] == {"before": 20, "quota": 7, "after": 7}
    assert report["buckets"]["nobody/human/dynamic"] == {"before": 0, "quota": 5, "after": 0}


def test_selection_is_deterministic_seeded_and_order_free():
    rows = rows_for({("koala36m", True, 3.0): 40, ("panda70m", False, 0.1): 40})
    cfg = BalanceConfig(target=20, seed=3)
    first, _ = select(rows, cfg)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert select(shuffled, cfg)[0] == first
    assert select(rows, BalanceConfig(target=20, seed=4))[0] != first
    # Adding clips to another bucket does not change this bucket's choice.
    more = rows + rows_for({("other", True, 3.0): 40})
    koala = [k for k in first if k.startswith("koala36m")]
    assert [k for k in select(more, BalanceConfig(target=30, seed=3))[0] if k.startswith("koala36m")] == koala


def test_config_validation():
    assert BalanceConfig.from_dict({"target": 5, "motion": {"thresholds": [1, 2, 3]}}).motion_labels == (
        "motion0", "motion1", "motion2", "motion3")
    for bad in [{}, {"target": 5, "quotas": {"a": 1}}, {"target": 5, "keys": ["colour"]},
                {"target": 5, "motion": {"thresholds": [2, 1]}}, {"target": 5, "size": 3}]:
        with pytest.raises(BalanceError):
            BalanceConfig.from_dict(bad)


def fake_build(out: Path, n: int = 12) -> list[dict]:
    """Shards + index.parquet as a build writes them (two sources, motion from a filter value)."""
    (out / "shards").mkdir(parents=True)
    rows = []
    for s in range(3):
        name = f"openuni-{s:06d}.tar"
        with wds.TarWriter(str(out / "shards" / name)) as tar:
            for i in range(s * n // 3, (s + 1) * n // 3):
                key = f"{'koala36m' if i % 2 else 'panda70m'}-v{i}-x"
                meta = {"key": key, "filters": {"motion": {"mean": float(i)}}}
                tar.write({"__key__": key, "mp4": bytes([i]) * (100 + i), "json": json.dumps(meta).encode(),
                           "flow.npz": bytes([255 - i]) * 50})
                rows.append({"key": key, "shard": name, "source": key.split("-")[0],
                             "filters": json.dumps(meta["filters"]), "scores": "{}", "member_bytes": "{}",
                             "facts": "{}"})
    pd.DataFrame(rows).to_parquet(out / "index.parquet", index=False)
    return rows


def members(folder: Path) -> dict[str, bytes]:
    out = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            out.update({m.name: tar.extractfile(m).read() for m in tar if m.isfile()})
    return out


def test_balance_copies_chosen_samples_byte_for_byte(tmp_path):
    fake_build(tmp_path)
    cfg = BalanceConfig(target=6, keys=("source",))
    report = balance(tmp_path, cfg, max_samples=4)
    assert report["total"] == {"before": 12, "after": 6}
    assert {b: v["after"] for b, v in report["buckets"].items()} == {"koala36m": 3, "panda70m": 3}
    balanced, source = members(tmp_path / "balanced" / "shards"), members(tmp_path / "shards")
    keys = {name.split(".")[0] for name in balanced}
    assert len(keys) == 6 and len(balanced) == 18
    assert all(balanced[name] == source[name] for name in balanced)
    assert report["shards"] == ["openuni-000000.tar", "openuni-000001.tar"]  # 4 + 2 samples
    index = pd.read_parquet(tmp_path / "balanced" / "index.parquet")
    assert set(index["key"]) == keys and set(index["shard"]) == set(report["shards"])
    assert json.loads((tmp_path / "balance.json").read_text())["buckets"] == report["buckets"]
    again = balance(tmp_path, cfg, max_samples=4)  # rerun replaces the subset with the same one
    assert again == report and members(tmp_path / "balanced" / "shards") == balanced


def test_openuni_balance_cli(tmp_path, monkeypatch, capsys):
    fake_build(tmp_path)
    written = []
    monkeypatch.setattr("openuni_builder.publish.card.write_card", lambda out, shards=None: written.append(out))
    assert main([str(tmp_path), "--target", "4", "--motion-thresholds", "5", "--keys", "motion"]) == 0
    report = json.loads((tmp_path / "balance.json").read_text())
    assert {b: (v["before"], v["after"]) for b, v in report["buckets"].items()} == {"motion0": (5, 2), "motion1": (7, 2)}
    assert written == [tmp_path] and "4 of 12 samples" in capsys.readouterr().out
    assert main([str(tmp_path)]) == 2  # neither --target nor --quotas
