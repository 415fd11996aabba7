"""Distributed data-parallel training: data shards, 2 processes in lockstep, exact resume, the CLI and torchrun."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from openmm_backmap.train.distributed import SINGLE_PROCESS, DistContext, rank_generators, shard_items

needs_dist = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def _write_config(folder, tiny_training):
    """The tiny run of the training tests (8 training frames of one file: 2 ranks get 2 blocks of 4 frames)."""
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_training))
    return path


@pytest.fixture
def tiny_config(tmp_path, tiny_training):
    return _write_config(tmp_path, tiny_training)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_training):
    """A 6-step 2-process run through the CLI (``--nproc 2``), every rank's weight digest after every step."""
    from openmm_backmap.cli import main

    config = _write_config(tmp_path_factory.mktemp("ddp"), tiny_training)
    assert main(["train", str(config), "--nproc", "2", "--set", "optim.check_sync_every=1"]) == 0
    return config.parent / "run"


def test_clusters_are_dealt_whole_and_balanced():
    rng = np.random.default_rng(0)
    groups = [f"c{int(c)}" for c in rng.integers(0, 40, 200)]
    size = {g: groups.count(g) for g in groups}
    weights = [1.0 / size[g] for g in groups]  # every cluster weighs 1, as corpus chains do
    shards = [shard_items(groups, weights, [1] * len(groups), r, 3) for r in range(3)]
    items = [sorted(i for i, _ in s) for s in shards]
    assert sorted(sum(items, [])) == list(range(len(groups)))  # every chain on exactly one rank
    clusters = [{groups[i] for i in it} for it in items]
    assert not (clusters[0] & clusters[1] or clusters[0] & clusters[2] or clusters[1] & clusters[2])
    totals = [sum(weights[i] for i in it) for it in items]
    assert max(totals) - min(totals) <= 1.0 + 1e-9  # balanced to within one cluster


def test_fewer_files_than_ranks_are_split_into_frame_blocks_or_refused():
    blocks = [shard_items(["a.dcd", "b.dcd"], [1, 1], [7, 4], r, 3) for r in range(3)]
    assert [[(i, f.tolist()) for i, f in b] for b in blocks] == [
        [(0, [0, 1, 2]), (1, [0, 1])], [(0, [3, 4]), (1, [2])], [(0, [5, 6]), (1, [3])]]
    with pytest.raises(ValueError, match="2 processes need at least 2"):
        shard_items(["one.pdb"], [1.0], [1], 0, 2)


def test_tasks_keep_their_rank_shard(trpcage, noisy_copies, tiny_training):
    """ca2aa: whole files and clusters per rank, weights renormalised; cgvae: whole files of the one system."""
    from openmm_backmap.train.ca2aa_task import CA2AATask
    from openmm_backmap.train.cgvae_task import CGVAETask
    from openmm_backmap.train.config import RunConfig, from_dict

    files = [noisy_copies(trpcage, n, 0.01, s) for s, n in enumerate([4, 3, 1, 1])]
    groups = ["a.dcd", "b.dcd", "corpus cluster 7", "corpus cluster 7"]
    cfg = from_dict(RunConfig, {"kind": "ca2aa", "model": tiny_training["model"], "seed": 0})
    tasks = [CA2AATask(cfg, files, files[:1], {"train_weights": [1, 1, 0.5, 0.5], "train_groups": groups})
             for _ in range(2)]
    for rank, task in enumerate(tasks):
        task.shard(rank, 2)
    # ensembles weigh ensemble_weight (3) each, the cluster 0.5 + 0.5: it goes where the load is least (a tie: rank 0)
    assert [t.groups for t in tasks] == [["a.dcd", "corpus cluster 7", "corpus cluster 7"], ["b.dcd"]]
    assert [len(it["xyz"]) for it in tasks[0].train] == [4, 1, 1] and len(tasks[1].train[0]["xyz"]) == 3
    assert tasks[0].weights == pytest.approx([3 / 4, 1 / 8, 1 / 8]) and tasks[1].weights == pytest.approx([1.0])
    cg = {"kind": "cgvae", "seed": 0, "task": {"beads": 4, "batch_frames": 2},
          "model": {"hidden": 16, "latent": 3, "encoder_layers": 1, "prior_layers": 1, "coarse_layers": 1,
                    "decoder_layers": 1, "fine_neighbors": 6, "bead_neighbors": 4, "rbf": 8}}
    task = CGVAETask(from_dict(RunConfig, cg), files[:2], files[:1], {}, log=lambda *a: None)
    task.shard(1, 2)
    assert task.train_index.tolist() == [4, 5, 6]  # the second file's frames
    assert set(task.sample_batch(np.random.default_rng(0))[0].shape[:1]) == {2}


def test_rank_streams_differ_and_a_single_process_keeps_its_seed():
    assert rank_generators(5, SINGLE_PROCESS).random() == np.random.default_rng(5).random()
    first = [rank_generators(5, DistContext(r, 2)).random() for r in range(2)]
    assert first[0] != first[1] and first == [rank_generators(5, DistContext(r, 2)).random() for r in range(2)]


def _model(run):
    from openmm_backmap.train.checkpoint import load_checkpoint

    return load_checkpoint(str(run / "last.pt"))


@needs_dist
def test_cli_two_processes_hold_identical_weights_after_every_step(two_process_run):
    run = two_process_run
    rows = [line.split(",") for line in (run / "sync.csv").read_text().split()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(len(r) == 3 and r[1] == r[2] for r in rows)  # step, digest of rank 0, digest of rank 1
    assert len({r[1] for r in rows}) == 6  # the weights moved in every step
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [3, 6]
    ck = _model(run)
    assert ck["world_size"] == 2 and len(ck["rank_rngs"]) == 2
    assert not torch.equal(ck["rank_rngs"][0]["torch_rng"], ck["rank_rngs"][1]["torch_rng"])
    from openmm_backmap.model import load_model

    assert load_model(str(run / "model.pt"), device="cpu").metadata["training"]["processes"] == 2


@needs_dist
def test_two_process_resume_continues_exactly(two_process_run, tiny_config):
    """torchrun for 3 steps, then --resume to 6, equals the uninterrupted 6-step run: weights and every rank's RNG."""
    from openmm_backmap.train import launch_training, train_model

    here = tiny_config.parent
    env = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "openmm_backmap.train", str(tiny_config), "--set", "run_dir=split",
                               "--set", "output=split/model.pt", "--set", "optim.max_steps=3"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    assert _model(here / "split")["state"]["step"] == 3
    summary = launch_training(str(tiny_config), 2, resume=True, overrides=["run_dir=split", "output=split/model.pt"])
    assert summary["steps"] == 6 and summary["processes"] == 2
    straight, split = _model(two_process_run), _model(here / "split")
    for key, value in straight["model"].items():
        assert torch.equal(split["model"][key], value), key
    for a, b in zip(straight["rank_rngs"], split["rank_rngs"]):
        assert torch.equal(a["torch_rng"], b["torch_rng"]) and a["numpy_rng"] == b["numpy_rng"]
    # one process cannot continue a 2-process checkpoint: its shards and random streams do not exist there
    with pytest.raises(ValueError, match="written by 2 training process"):
        train_model(str(tiny_config), resume=True, overrides=["run_dir=split", "optim.max_steps=9"],
                    log=lambda *a: None)


@needs_dist
def test_launch_reports_a_user_error_of_the_workers_in_one_line(tiny_config, capsys):
    from openmm_backmap.cli import main

    bad = yaml.safe_load(tiny_config.read_text())
    bad["data"]["files"] = ["no-such-file-*.pdb"]
    tiny_config.write_text(yaml.safe_dump(bad))
    assert main(["train", str(tiny_config), "--nproc", "2"]) == 2
    assert "no files match" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Every example config, 2 processes (issue 23, item 2): the cgvae configs stopped in their second step with DDP's
# "parameters that were not used in producing loss". Each config keeps its own model section (and init); only the
# data (the 10 Trp-cage frames of tests/data), the batch and the step count are made tiny. Both processes are
# spawned once and train every config in turn, so the cost is the configs' training, not 8 process start-ups.

EXAMPLE_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.yaml"))


def _tiny_overrides(config: Path, tests_data, out: Path) -> list:
    """``--set`` values that shrink ``config``'s run to 2 steps on tests/data (its model section untouched)."""
    kind = yaml.safe_load(config.read_text()).get("kind", "ca2aa")
    sets = [f"run_dir={out}", f"output={out / 'model.pt'}", f"data.root={tests_data}",
            "data.files=[trpcage_train10.pdb.gz]", "data.stride=1", "data.max_frames=0", "data.validation_fraction=0.2",
            'data.corpus=""', 'data.cache_dir=""', "optim.max_steps=2", "optim.validate_every=2", "optim.threads=1",
            "optim.batch_residues=60", "optim.time_limit_min=10", "optim.check_sync_every=1", "task.val_frames=2"]
    if kind == "cgvae":
        sets.append("task.batch_frames=2")
    return sets


def _train_examples(rank, store, jobs):
    """One rank: train every job, each in a fresh gloo group with a timeout, so a failure stays with its config."""
    import datetime
    import traceback

    import torch.distributed as dist

    from openmm_backmap.train import train_model
    from openmm_backmap.train.distributed import init_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    for i, (config, overrides, out) in enumerate(jobs):
        dist.init_process_group("gloo", init_method=f"file://{store}-{i}", rank=rank, world_size=2,
                                timeout=datetime.timedelta(seconds=120))
        try:
            train_model(config, overrides=overrides, dist=init_distributed(), log=lambda *a: None)
        except Exception:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / f"error-rank{rank}.txt").write_text(traceback.format_exc())
        finally:
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory, tests_data):
    """Run directory of each example config after its 2-step 2-process run (by config file name)."""
    import torch.multiprocessing as mp

    here = tmp_path_factory.mktemp("examples-ddp")
    runs = {c.name: here / c.stem for c in EXAMPLE_CONFIGS}
    jobs = [(str(c), _tiny_overrides(c, tests_data, runs[c.name]), str(runs[c.name])) for c in EXAMPLE_CONFIGS]
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned ranks
    try:
        mp.spawn(_train_examples, args=(str(here / "store"), jobs), nprocs=2, join=True)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old
    return runs


def test_every_step_kind_has_an_example_config():
    kinds = {yaml.safe_load(c.read_text()).get("kind") for c in EXAMPLE_CONFIGS}
    assert {"cgvae", "ca2aa", "bead2aa"} <= kinds


@needs_dist
@pytest.mark.parametrize("config", [c.name for c in EXAMPLE_CONFIGS])
def test_every_example_config_trains_on_two_processes(example_runs, config):
    from openmm_backmap.model import load_model

    run = example_runs[config]
    errors = sorted(run.glob("error-rank*.txt")) if run.is_dir() else []
    assert not errors, errors[0].read_text()[-3000:]
    assert (run / "model.pt").exists()
    rows = [line.split(",") for line in (run / "sync.csv").read_text().split()]
    assert [int(r[0]) for r in rows] == [1, 2] and all(r[1] == r[2] for r in rows)  # ranks in step
    assert rows[0][1] != rows[1][1]  # the weights moved
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [2]
    assert load_model(str(run / "model.pt"), device="cpu").metadata["training"]["processes"] == 2


def _earlier_run(run: Path) -> dict:
    """An earlier run's files in ``run`` (no model: check_model_output is not what protects them)."""
    run.mkdir(parents=True, exist_ok=True)
    files = {"config.yaml": "kind: earlier\n", "log.csv": "step,train_loss\n100,0.5\n", "last.pt": "earlier",
             "best.pt": "earlier"}
    for name, text in files.items():
        (run / name).write_text(text)
    return files


@needs_dist
def test_cli_two_processes_train_the_cgvae_example_and_keep_an_earlier_run_unless_forced(tmp_path, tests_data,
                                                                                         capsys):
    """The issue's command, ``train trpcage-ucg4-step1.yaml --nproc 2``: refused (one line, nothing changed) in a
    run directory that holds an earlier run; with --force it trains past the second step and replaces that run."""
    from openmm_backmap.cli import main

    config = next(c for c in EXAMPLE_CONFIGS if c.name == "trpcage-ucg4-step1.yaml")
    run = tmp_path / "run"
    earlier = _earlier_run(run)
    sets = sum((["--set", s] for s in _tiny_overrides(config, tests_data, run)
                if not s.startswith(("optim.max_steps", "optim.check_sync_every"))), [])
    sets += ["--set", "optim.max_steps=4"]
    assert main(["train", str(config), "--nproc", "2", *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "earlier training run" in err and "--resume" in err and "--force" in err
    assert {p.name: p.read_text() for p in run.iterdir()} == earlier
    assert main(["train", str(config), "--nproc", "2", "--force", *sets]) == 0
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [2, 4]
    assert yaml.safe_load((run / "config.yaml").read_text())["kind"] == "cgvae"
    assert (run / "model.pt").exists()


def test_a_forced_run_that_fails_before_training_leaves_the_earlier_run(tiny_config, monkeypatch):
    """--force replaces an earlier run only once the new one has trained: a run that fails in its first step
    (as the 2-process cgvae runs did) leaves config.yaml, log.csv and the checkpoints of the earlier run."""
    import openmm_backmap.train.loop as loop
    from openmm_backmap.train import train_model

    run = tiny_config.parent / "run"
    earlier = _earlier_run(run)

    def broken(task, ctx):
        def step(batch):
            raise RuntimeError("a step that fails")

        from contextlib import nullcontext

        return step, nullcontext

    monkeypatch.setattr(loop, "wrap_model", broken)
    with pytest.raises(RuntimeError, match="a step that fails"):
        train_model(str(tiny_config), force=True, log=lambda *a: None)
    assert {p.name: p.read_text() for p in run.iterdir()} == earlier
