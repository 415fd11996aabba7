"""Training shows progress where no bar is drawn (issue 23, item 3): the quick example printed nothing for 9 minutes
because tqdm draws nothing when the output is not a terminal and ``validate_every`` steps took that long."""

from __future__ import annotations

import re

import pytest
import yaml

from openmm_backmap.cli import main
from openmm_backmap.train import progress as progress_mod
from openmm_backmap.train.progress import Progress, format_duration


@pytest.fixture
def every_update(monkeypatch):
    """A plain line at every update instead of every 10 s: the tests need not wait."""
    monkeypatch.setattr(progress_mod, "LINE_EVERY_S", 0.0)


def test_train_prints_step_lines_before_the_first_validation(tmp_path, tiny_training, capsys, every_update):
    """The CLI's output, captured (not a terminal): a line before reading the data and before preparing the task,
    then step lines with the loss, s/step and ETA although no validation comes before the last step."""
    cfg = {**tiny_training, "optim": {**tiny_training["optim"], "max_steps": 4, "validate_every": 100}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--force"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    reading = next(i for i, line in enumerate(lines) if line.startswith("data: reading 1 file(s)"))
    preparing = next(i for i, line in enumerate(lines) if line.startswith("ca2aa: preparing"))
    steps = [i for i, line in enumerate(lines) if re.match(r"step \d+/4  loss [\d.]+  lr \S+  \S+ s/step  ETA ", line)]
    validation = next(i for i, line in enumerate(lines) if re.match(r"step +4  train ", line))
    assert reading < preparing < steps[0] and len(steps) >= 3 and steps[-1] < validation, out.out
    assert "Traceback" not in out.out + out.err and "Warning" not in out.err


def test_no_lines_for_other_ranks_or_with_a_terminal_bar(capsys, every_update):
    Progress(3, "step", "step", enabled=False).update()
    assert capsys.readouterr().out == ""


def test_line_has_rate_and_an_eta_capped_by_the_deadline(every_update):
    p = Progress(1000, "step", "step", deadline_s=30)
    p.n = 10  # 10 s for the first 10 steps: 990 steps left at 1 s/step, but the time limit stops in 20 s
    line = p.line(now=p.t0 + 10.0)
    assert line.startswith("step 10/1000") and "1 s/step" in line and line.endswith("ETA 20 s"), line
    resumed = Progress(100, "step", "step", initial=90)
    resumed.n = 95  # a resumed run's rate counts its own steps only
    assert "1 s/step  ETA 5 s" in resumed.line(now=resumed.t0 + 5.0)


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 7390)] == \
        ["0 s", "59 s", "1 min 1 s", "59 min 59 s", "1 h 0 min", "2 h 3 min"]
