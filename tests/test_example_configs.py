"""The example training configs never write into ``models/``: a newcomer's first training run must not replace a
shipped model (issue 23, item 1). Outputs go under ``runs/``; promoting a model is the maintainer's explicit ``cp``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
MODELS = (ROOT / "models").resolve()


def _resolved(config: Path, value: str) -> Path:
    return (config.parent / value).resolve()  # relative paths are relative to the config file (train.load_config)


def test_there_are_example_configs():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_example_config_writes_under_runs_not_models(config):
    cfg = yaml.safe_load(config.read_text())
    run_dir = _resolved(config, cfg.get("run_dir", "runs/run"))
    output = _resolved(config, cfg["output"]) if cfg.get("output") else run_dir / "model.pt"
    for what, path in (("output", output), ("run_dir", run_dir)):
        assert MODELS != path and MODELS not in path.parents, (
            f"{config.name}: {what} {path} is inside models/; write under runs/ (promote by hand: cp ... models/)")
    assert (ROOT / "runs").resolve() in output.parents, f"{config.name}: output {output} is not under runs/"
