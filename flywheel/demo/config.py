"""Settings of `flywheel demo` and `flywheel simulate` (``FLYWHEEL_DEMO__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from flywheel.sim.config import SimulatorConfig


class DemoConfig(BaseModel):
    """The closed loop in one process: how many generations, how much traffic, where the report goes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generations: int = Field(default=3, gt=0, description="Training generations to run (each: traffic → train → gate → canary).")
    report_dir: Path = Field(default=Path("report"), description="Where report.json and report.png are written.")
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig, description="The simulated user population.")
