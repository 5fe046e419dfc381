"""The stage plan is fitted to the cluster: no GPU -> CPU, too few CPUs -> smaller shares, too
many GPUs asked -> a clear refusal."""

from __future__ import annotations

import pytest
import ray

from openuni_builder.clip import ClipRequest
from openuni_builder.config import ConfigError, load_config
from openuni_builder.runtime import PlanError, plan, requests_dataset, stage_graph
from tests.conftest import tiny_config

ANNOTATORS = ("  flow: {backend: dis, resources: {num_cpus: 2, concurrency: 2, pool: actors}}\n"
              "  depth: {resources: {num_gpus: 0.5, concurrency: 2}}\n")


def test_gpu_asks_are_dropped_when_no_gpu_is_visible(tmp_path):
    stages = {s.name: s for s in plan(load_config(tiny_config(tmp_path, ANNOTATORS)), 16, 0)}
    assert stages["depth"].resources.num_gpus == 0 and stages["depth"].kind == "actors"
    assert [s for s in stages] == ["decode", "flow", "depth", "encode"]


def test_actor_cpu_shares_shrink_to_leave_room_for_the_cpu_stages(tmp_path):
    stages = plan(load_config(tiny_config(tmp_path, ANNOTATORS)), 2, 1)
    pinned = sum(s.resources.num_cpus * s.resources.concurrency for s in stages if s.kind == "actors")
    assert pinned == pytest.approx(2 - 0.5)  # the tiny config's CPU stages take 0.5 CPU per task


def test_more_gpus_than_the_cluster_has_is_refused(tmp_path):
    with pytest.raises(PlanError, match="ask for 1 GPUs but the cluster has 0.5"):
        plan(load_config(tiny_config(tmp_path, ANNOTATORS)), 16, 0.5)


def test_annotator_resources_follow_its_options(tmp_path, monkeypatch):
    """DIS flow takes one clip per call; RAFT keeps its batch; config overrides win over both."""
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path / "empty-cache"))
    flows = ("  flow: {backend: dis}\n", "  flow: {backend: raft}\n", "  flow: {backend: dis, resources: {batch_size: 3}}\n")
    batches = [{s.name: s for s in plan(load_config(tiny_config(tmp_path, a)), 16, 0)}["flow"].resources.batch_size
               for a in flows]
    assert batches == [1, 4, 3]


@pytest.mark.parametrize("pipeline", ["openuni", "panda_dense"])
def test_bundled_pipelines_fit_one_gpu_with_raft_flow(pipeline):
    """RAFT flow asks for a GPU share (else Ray hides the GPU from it); the bundled pipelines'
    shares leave room for it, so every actor fits on one GPU."""
    from dataclasses import replace

    from pipelines import resolve

    cfg = load_config(resolve(pipeline))
    cfg = replace(cfg, annotators=tuple(replace(a, options=replace(a.options, backend="raft")) if a.name == "flow"
                                        else a for a in cfg.annotators))
    stages = {s.name: s for s in plan(cfg, 16, 1)}
    assert stages["flow"].resources.num_gpus == pytest.approx(0.1)
    assert sum(s.resources.num_gpus * s.resources.concurrency for s in stages.values()) <= 1 + 1e-9
    assert {s.name: s for s in plan(cfg, 16, 0)}["flow"].asked_gpus == pytest.approx(0.1)


def test_gpu_pools_autoscale_over_every_gpu_of_a_large_cluster():
    """--plan --gpus 64 used to place one actor of each annotator on GPU 0 and leave 63 idle."""
    from openuni_builder.runtime import format_plan, pack_gpus, resolve_stages
    from pipelines import resolve

    stages = resolve_stages(load_config(resolve("openuni")), 64)
    gpu_pools = [s for s in stages if s.resources.num_gpus]
    assert gpu_pools and all(s.resources.max_concurrency == 64 * s.resources.concurrency for s in gpu_pools)
    packing = pack_gpus(stages, 64)
    assert all(packing) and len(packing) == 64  # every GPU holds actors
    table = format_plan(stages, 512, 64)
    assert "idle" not in table and "1-64" in table


def test_max_concurrency_is_configurable_and_checked(tmp_path):
    pool = "pool: actors"
    cfg = load_config(tiny_config(tmp_path, f"  flow: {{backend: dis, resources: {{concurrency: 1, max_concurrency: 3, {pool}}}}}\n"))
    assert {s.name: s for s in plan(cfg, 16, 0)}["flow"].resources.max_concurrency == 3
    bad = load_config(tiny_config(tmp_path, f"  flow: {{backend: dis, resources: {{concurrency: 2, max_concurrency: 1, {pool}}}}}\n"))
    with pytest.raises(PlanError, match="max_concurrency 1 is below concurrency 2"):
        plan(bad, 16, 0)


def test_dis_flow_runs_in_the_cpu_task_chain(tmp_path):
    """DIS holds no model: it runs as tasks with decode's CPU ask and concurrency (so Ray Data can
    fuse them); `pool: actors` or a GPU ask makes it an actor pool; an unknown pool is refused."""
    def stages(block: str) -> dict:
        return {s.name: s for s in plan(load_config(tiny_config(tmp_path, block)), 16, 1)}

    default = stages("  flow: {backend: dis}\n")
    flow, decode = default["flow"].resources, default["decode"].resources
    assert default["flow"].kind == "tasks" and (flow.num_cpus, flow.concurrency) == (decode.num_cpus, decode.concurrency)
    assert stages("  flow: {backend: dis, resources: {pool: actors}}\n")["flow"].kind == "actors"
    assert stages("  flow: {backend: dis, resources: {num_gpus: 0.5}}\n")["flow"].kind == "actors"
    with pytest.raises(ConfigError, match="resources.pool must be one of actors, tasks"):
        load_config(tiny_config(tmp_path, "  flow: {backend: dis, resources: {pool: threads}}\n"))


def physical_plan(tmp_path, capsys, config) -> str:
    """The optimized physical plan Ray Data prints for the graph of a build with pipeline `config`."""
    cfg = load_config(config)
    requests, _ = requests_dataset([ClipRequest("t", "v", str(tmp_path / "v.mp4"))], cfg)
    graph, counter = stage_graph(requests, cfg, str(tmp_path / "out"))
    try:
        graph.explain()
    finally:
        ray.kill(counter)
    return capsys.readouterr().out.split("Physical Plan (Optimized)")[1]


def test_decode_dis_flow_and_encode_run_as_one_task(tmp_path, ray_local, capsys):
    """The CPU steps between two actor pools run as one task per clip: a clip's frames and float32
    flow stay in the process that decoded them, as Python objects, instead of being pickled to an
    actor (or between fused stages) and back."""
    physical = physical_plan(tmp_path, capsys, tiny_config(tmp_path))
    assert "TaskPoolMapOperator[Map(decode->flow->encode)]" in physical
    assert "TaskPoolMapOperator[MapBatches(write_shards)]" in physical  # the writer stays its own stage


def test_an_actor_pool_or_another_ask_ends_a_run_of_cpu_steps(tmp_path, ray_local, capsys):
    """decode -> DIS flow (tasks) runs as one task, the depth pool holds its actors, encode is its
    own task stage; decode and encode that ask for different CPUs never share a task."""
    physical = physical_plan(tmp_path, capsys, tiny_config(tmp_path, "  flow: {backend: dis}\n  depth: {}\n"))
    assert "[Map(decode->flow)]" in physical and "[MapBatches(AnnotatorStage)]" in physical
    assert "TaskPoolMapOperator[Map(encode)]" in physical
    path = tiny_config(tmp_path, "  flow: {backend: dis}\n")
    path.write_text(path.read_text().replace("encode: {num_cpus: 0.5", "encode: {num_cpus: 0.25"))
    physical = physical_plan(tmp_path, capsys, path)
    assert "[Map(decode->flow)]" in physical and "[Map(encode)]" in physical
