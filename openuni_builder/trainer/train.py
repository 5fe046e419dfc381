"""Train the UnityVideo-style DiT from shards: `openuni-train --shards OUT/shards --config tiny.yaml`.

Dynamic task routing: every step draws one task (cond: RGB noised, modality clean; est: modality
noised, RGB clean; joint: both noised; rgb: text-to-video without a modality stream) with the
config's probabilities, so one model learns generation, estimation and joint generation.
State (model, EMA, optimiser, schedule, step, RNG) goes to OUT/checkpoint.pt; a rerun with the
same --out resumes from it. Losses per task and per modality go to OUT/metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from openuni_builder.trainer.data import DataConfig, training_loader
from openuni_builder.trainer.flow import TASKS, flow_loss, logit_normal
from openuni_builder.trainer.latent import load_autoencoder
from openuni_builder.trainer.model import MODALITIES, DiTConfig, UnityDiT
from openuni_builder.trainer.text import DEFAULT_TEXT_ENCODER, MODALITY_PROMPTS, TextEncoder

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class OptimConfig:
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    t_mean: float = 0.0
    t_std: float = 1.0
    log_every: int = 10
    ckpt_every: int = 250
    seed: int = 0


@dataclass
class Config:
    model: DiTConfig = field(default_factory=DiTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    tasks: dict[str, float] = field(default_factory=lambda: {"cond": 0.2, "est": 0.3, "joint": 0.5})
    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_max_length: int = 64
    latent: Any = "pixel"

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks or min(self.tasks.values()) < 0 or sum(self.tasks.values()) <= 0:
            raise ValueError(f"tasks must map some of {TASKS} to non-negative probabilities, got {self.tasks}")
        if not self.data.modalities and any(p > 0 for t, p in self.tasks.items() if t != "rgb"):
            raise ValueError("tasks cond/est/joint need data.modalities; with none, use tasks: {rgb: 1}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        d = dict(d)
        sections = {"model": DiTConfig, "data": DataConfig, "train": OptimConfig}
        for name, klass in sections.items():
            known = {f.name for f in dataclasses.fields(klass)}
            given = d.get(name) or {}
            if set(given) - known:
                raise ValueError(f"unknown keys in {name}: {sorted(set(given) - known)}; known: {sorted(known)}")
            if name == "model" and "patch" in given:
                given = {**given, "patch": tuple(given["patch"])}
            d[name] = klass(**given)
        top = {f.name for f in dataclasses.fields(cls)}
        if set(d) - top:
            raise ValueError(f"unknown config keys {sorted(set(d) - top)}; known: {sorted(top)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """A YAML config: a path, or the name of a bundled one (tiny, small)."""
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.yaml").exists():
            p = CONFIG_DIR / f"{path}.yaml"
        with open(p) as fh:
            return cls.from_dict(yaml.safe_load(fh) or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Run:
    """Everything a training run holds: networks, optimiser state, and the step counter."""

    def __init__(self, cfg: Config, device: str | torch.device = "cpu") -> None:
        self.cfg, self.device, self.step = cfg, torch.device(device), 0
        torch.manual_seed(cfg.train.seed)
        self.text = TextEncoder(cfg.text_encoder, cfg.text_max_length).to(self.device)
        self.latent = load_autoencoder(cfg.latent).to(self.device)
        cfg.model.in_channels, cfg.model.text_dim = self.latent.channels, self.text.dim
        self.model = UnityDiT(cfg.model).to(self.device)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        warmup = max(1, cfg.train.warmup)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warmup))

    def autocast(self) -> torch.autocast:
        """bf16 autocast on GPU; full precision on CPU (CPU bf16 is slow and gains nothing here)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def loss(self, batch: dict[str, Any], task: str, model: torch.nn.Module | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample loss (B,) of `task` on a collated batch (`generator` fixes t and noise)."""
        model = model or self.model
        with torch.no_grad():
            rgb = self.latent.encode(batch["rgb"].to(self.device))
            caption = self.text(batch["caption"], self.device)
            mod = modality = prompt = None
            if task != "rgb":
                mod = self.latent.encode(batch["mod"].to(self.device))
                modality = batch["modality"].to(self.device)
                prompt = self.text([MODALITY_PROMPTS[MODALITIES[i]] for i in batch["modality"].tolist()], self.device)
        t = logit_normal(rgb.shape[0], self.cfg.train.t_mean, self.cfg.train.t_std, generator, self.device)
        with self.autocast():
            return flow_loss(model, task, rgb, caption, t, mod, modality, prompt, generator)

    def train_step(self, batch: dict[str, Any], task: str) -> torch.Tensor:
        self.model.train()
        losses = self.loss(batch, task)
        self.opt.zero_grad(set_to_none=True)
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        return losses.detach()

    def pick_task(self) -> str:
        """The task of the current step: a pure function of (seed, step), so resume replays it."""
        rng = random.Random(self.cfg.train.seed * 1_000_003 + self.step)
        names = [t for t, p in self.cfg.tasks.items() if p > 0]
        return rng.choices(names, weights=[self.cfg.tasks[t] for t in names])[0]

    def save(self, path: str | Path) -> None:
        """Atomic checkpoint (written beside, then renamed over the old one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "config": self.cfg.to_dict(), "model": self.model.state_dict(),
                 "ema": self.ema.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def restore(self, path: str | Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = state["step"]


class LossLog:
    """Running means of the loss per task and per modality between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, task: str, losses: torch.Tensor, modalities: list[int] | None) -> None:
        names = ["loss", f"task/{task}"]
        for i, value in enumerate(losses.tolist()):
            per_sample = names + ([f"modality/{MODALITIES[modalities[i]]}"] if modalities and task != "rgb" else [])
            for name in per_sample:
                s = self.sums.setdefault(name, [0.0, 0])
                s[0] += value
                s[1] += 1

    def flush(self) -> dict[str, float]:
        means = {name: total / count for name, (total, count) in sorted(self.sums.items())}
        self.sums = {}
        return means


def train(cfg: Config, shards: str | Path | list[str], out: str | Path, device: str = "cpu") -> Run:
    """Train until cfg.train.steps, resuming from OUT/checkpoint.pt when it exists."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, device)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        run.restore(ckpt)
        print(f"resumed from {ckpt} at step {run.step}", flush=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    loader = iter(training_loader(shards, cfg.data, seed=cfg.train.seed + run.step))
    log, started = LossLog(), time.time()
    with open(out / "metrics.jsonl", "a") as metrics:
        while run.step < cfg.train.steps:
            batch = next(loader)
            task = run.pick_task()
            losses = run.train_step(batch, task)
            if not torch.isfinite(losses).all():
                raise FloatingPointError(f"non-finite loss at step {run.step} (task {task}): {losses.tolist()}")
            log.add(task, losses, batch["modality"].tolist() if "modality" in batch else None)
            if run.step % cfg.train.log_every == 0 or run.step == cfg.train.steps:
                row = {"step": run.step, "lr": run.sched.get_last_lr()[0],
                       "sec": round(time.time() - started, 2), **log.flush()}
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            if run.step % cfg.train.ckpt_every == 0 or run.step == cfg.train.steps:
                run.save(ckpt)
    return run
