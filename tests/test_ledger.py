"""The ledger: linear bookkeeping, torn lines after a kill, and recovery of the one shard a kill
can leave half-ledgered."""

from __future__ import annotations

import builtins
import json

from openuni_builder.ledger import Ledger
from openuni_builder.shards import recover, write_shard


def rows(shard: str, keys: list[str]) -> list[dict]:
    return [{"key": k, "shard": shard, "bytes": 1, "scores": {"a": 1.0}} for k in keys]


def test_done_keys_load_once_and_appends_never_reread(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path)
    ledger.mark_done(rows("s0.tar", ["a", "b"]))
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, mode="r", *a, **k: opened.append((str(f), mode)) or
                        real_open(f, mode, *a, **k))
    fresh = Ledger(tmp_path)
    assert fresh.done_keys() == {"a": "s0.tar", "b": "s0.tar"}
    for i in range(50):
        fresh.mark_failed(f"f{i}", "decode", "broken")
        fresh.mark_done(rows("s1.tar", [f"d{i}"]))
    reads = [m for f, m in opened if "r" in m and "a" not in m]
    assert len(reads) <= 3, reads  # done.jsonl once for the keys; one byte each to check a torn end
    assert len(fresh.done_keys()) == 52 and fresh.done_keys()["d7"] == "s1.tar"


def test_a_torn_line_never_counts_and_the_next_record_starts_clean(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.mark_done(rows("s0.tar", ["a"]))
    whole = json.dumps(rows("s0.tar", ["b"])[0])
    cut = whole[:whole.index('"scores": {"a": 1.0}') + len('"scores": {"a": 1.0}')]  # ends on a brace
    with open(ledger.done_path, "a") as fh:
        fh.write(cut)
    again = Ledger(tmp_path)
    assert set(again.done_keys()) == {"a"} and [r["key"] for r in again.iter_done()] == ["a"]
    assert again.last_shard() == "s0.tar"
    again.mark_done(rows("s0.tar", ["c"]))
    assert set(Ledger(tmp_path).done_keys()) == {"a", "c"}


def test_recover_completes_the_shard_whose_rows_a_kill_cut_short(tmp_path):
    shards = tmp_path / "shards"
    samples = [(k, {"json": json.dumps({"key": k}).encode(), "txt": b"x"}, {"key": k}) for k in ("a", "b", "c")]
    name, shard_rows = write_shard(shards, samples, mtime=0, node="test")
    ledger = Ledger(tmp_path)
    ledger.mark_done(shard_rows[:1])  # the kill came after the first row of three
    (shards / "openuni-orphan.tar").write_bytes(b"no manifest: never committed")
    (shards / "x.tar.tmp-1234").write_bytes(b"")
    assert recover(shards, Ledger(tmp_path)) == 2
    assert sorted(Ledger(tmp_path).done_keys()) == ["a", "b", "c"]
    assert sorted(p.name for p in shards.iterdir()) == [name, name + ".manifest.json"]
    assert recover(shards, Ledger(tmp_path)) == 0  # nothing twice
