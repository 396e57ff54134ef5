"""accelerate's experiment trackers (`--log-with`): each finished generation's numeric metrics and its
sample grid, so a run or a sweep can be watched live. A no-op with `none`."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from autophagy.config import RunConfig
from autophagy.rundir import RunDir


class Tracker:
    def __init__(self, cfg: RunConfig, rd: RunDir):
        self.accelerator = None
        if cfg.log_with != "none":
            from accelerate import Accelerator
            self.accelerator = Accelerator(log_with=cfg.log_with, project_dir=str(rd.root / "logs"),
                                           cpu=not torch.cuda.is_available())
            config = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()}
            self.accelerator.init_trackers(rd.root.name, config=config)

    def log_generation(self, rd: RunDir, t: int) -> None:
        if self.accelerator is None or not self.accelerator.is_main_process:
            return
        row = next(r for r in rd.read_rows() if r["generation"] == t)
        self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                              and k != "generation"}, step=t)
        grid = np.asarray(Image.open(rd.grid_path(t)).convert("RGB"))
        for tracker in self.accelerator.trackers:
            if hasattr(tracker, "log_images"):
                tracker.log_images({"samples": grid[None]}, step=t, dataformats="NHWC") \
                    if tracker.name == "tensorboard" else tracker.log_images({"samples": [grid]}, step=t)

    def finish(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()
