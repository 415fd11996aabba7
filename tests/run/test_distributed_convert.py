"""``convert`` on a Dask cluster (openmm_backmap.run.distributed): byte-identical to the serial run, complete after
a worker dies, and one-line errors for the faults."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

pytest.importorskip("distributed")

from openmm_backmap.cli import main  # noqa: E402
from openmm_backmap.run import BackmapPipeline, BadFrameWarning  # noqa: E402
from openmm_backmap.run import convert_trajectory as convert  # noqa: E402
from openmm_backmap.run import distributed  # noqa: E402

DASK = Path(sys.executable).parent / "dask"


@pytest.fixture(scope="module")
def cg(tmp_path_factory, trpcage):
    """Trp-cage C-alphas: topology PDB and a 9-frame XTC (5 ps apart) whose frame 3 is NaN."""
    from openmm_backmap.run.coarsening import coarsen_files

    d = tmp_path_factory.mktemp("cg")
    pdb = coarsen_files(trpcage.source, levels="ca", out_prefix=str(d / "trp"), verbose=False)["ca"]["pdb"]
    rng = np.random.default_rng(0)
    xyz = (trpcage.ca_xyz[0][None] + rng.normal(scale=0.01, size=(9, 20, 3))).astype(np.float32)
    xyz[3] = np.nan
    md.Trajectory(xyz, md.load_topology(pdb), time=np.arange(9) * 5.0).save_xtc(str(d / "traj.xtc"))
    return {"pdb": pdb, "traj": str(d / "traj.xtc")}


def _args(cg, tiny_ca_model, **kw):
    return dict(topology=cg["pdb"], model=str(tiny_ca_model), chunk=2, samples=2, seed=3, device="cpu",
                progress=False, **kw)


@pytest.fixture(scope="module")
def serial(cg, tiny_ca_model, tmp_path_factory):
    """The serial run's output bytes (XTC: no time stamp in the file, unlike DCD and PDB headers)."""
    out = tmp_path_factory.mktemp("serial") / "aa.xtc"
    with pytest.warns(BadFrameWarning):
        s = convert(cg["traj"], out, **_args(cg, tiny_ca_model))
    assert (s["frames_in"], s["frames_skipped"], s["frames_written"]) == (8, 1, 16)
    return out.read_bytes()


def test_cli_workers_2_is_byte_identical_to_serial(tmp_path, cg, tiny_ca_model, serial, capsys):
    out = tmp_path / "aa.xtc"
    rc = main(["convert", cg["traj"], "-t", cg["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
               "--chunk", "2", "--samples", "2", "--seed", "3", "--device", "cpu", "--workers", "2"])
    assert rc == 0
    assert out.read_bytes() == serial
    assert not list(tmp_path.glob("*partial*"))
    captured = capsys.readouterr()
    assert "on 2 Dask worker(s)" in captured.out and "skipped 1 bad CG frame(s) (input frames 3)" in captured.out
    # the CLI prints the bad-frame warning as one line of its own
    assert any(line.startswith("openmm-backmap convert: warning: CG frame(s) 3 ") for line in captured.err.splitlines()), captured.err[-2000:]


def test_unwritable_output_fails_before_any_cluster(tmp_path, cg, tiny_ca_model, monkeypatch, capsys):
    def no_cluster(*args, **kwargs):
        raise AssertionError("the cluster was contacted")

    monkeypatch.setattr(distributed, "_connect", no_cluster)
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "aa.xtc"  # a directory that is a file (root ignores permission bits)
    rc = main(["convert", cg["traj"], "-t", cg["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
               "--workers", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a file, not a directory" in err
    assert os.listdir(tmp_path) == ["file"]


def test_unreachable_scheduler_is_one_line(tmp_path, cg, tiny_ca_model, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 1)
    rc = main(["convert", cg["traj"], "-t", cg["pdb"], "-o", str(tmp_path / "aa.xtc"), "--model",
               str(tiny_ca_model), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- external clusters and faults (slow)
def _wait_for(path, seconds=60):
    t0 = time.monotonic()
    while not Path(path).exists():
        if time.monotonic() - t0 > seconds:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@pytest.fixture
def external_cluster(tmp_path):
    """Start ``dask scheduler`` and ``dask worker`` processes on localhost; yields start(n_workers, env=None)
    -> scheduler address."""
    procs = []
    sched_file = tmp_path / "scheduler.json"

    def start(n_workers, env=None):
        if not procs:
            procs.append(subprocess.Popen([str(DASK), "scheduler", "--port", "0", "--no-dashboard",
                                           "--scheduler-file", str(sched_file)], cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_for(sched_file)
        for _ in range(n_workers):
            procs.append(subprocess.Popen([str(DASK), "worker", "--scheduler-file", str(sched_file),
                                           "--nthreads", "1", "--no-dashboard"], cwd=tmp_path,
                                          env={**os.environ, **(env or {})},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return json.loads(sched_file.read_text())["address"]

    yield start
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.mark.slow
def test_external_scheduler_and_two_workers_byte_identical(tmp_path, cg, tiny_ca_model, serial,
                                                           external_cluster):
    from distributed import Client

    address = external_cluster(2)
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    out = tmp_path / "aa.xtc"
    with pytest.warns(BadFrameWarning):
        s = convert(cg["traj"], out, scheduler=address, **_args(cg, tiny_ca_model))
    assert s["workers"] == 2 and out.read_bytes() == serial


@pytest.mark.slow
def test_worker_without_the_package_names_it(tmp_path, cg, tiny_ca_model, external_cluster, capsys):
    # a worker whose environment cannot import openmm_backmap: a broken package of that name comes first on its path
    shadow = tmp_path / "shadow" / "openmm_backmap"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'openmm_backmap'\")\n")
    address = external_cluster(1, env={"PYTHONPATH": str(shadow.parent)})
    out = tmp_path / "aa.xtc"
    rc = main(["convert", cg["traj"], "-t", cg["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
               "--scheduler", address])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "cannot import 'openmm_backmap'" in err and "No module named 'openmm_backmap'" in err
    assert not out.exists() and not list(tmp_path.glob("aa*"))


@pytest.mark.slow
def test_killed_worker_is_retried_and_output_complete(tmp_path, cg, tiny_ca_model, serial, monkeypatch):
    from distributed import Client, LocalCluster

    real_write = BackmapPipeline.write
    killed = []

    def write(self, result, *args, **kwargs):
        n = real_write(self, result, *args, **kwargs)
        if not killed:  # after the first chunk, with the others in flight: kill a worker process hard
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            os.kill(victim, 9)
            killed.append(victim)
        return n

    monkeypatch.setattr(BackmapPipeline, "write", write)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        out = tmp_path / "aa.xtc"
        with pytest.warns(BadFrameWarning):
            s = convert(cg["traj"], out, client=client, **_args(cg, tiny_ca_model))
    assert killed and s["frames_in"] == 8
    assert out.read_bytes() == serial


@pytest.mark.slow
def test_workers_that_cannot_see_the_input_get_it_streamed(tmp_path, cg, tiny_ca_model, serial, monkeypatch):
    monkeypatch.setattr(distributed, "_workers_see", lambda client, path: False)
    out = tmp_path / "aa.xtc"
    with pytest.warns(BadFrameWarning):
        s = convert(cg["traj"], out, workers=2, **_args(cg, tiny_ca_model))
    assert s["workers"] == 2 and out.read_bytes() == serial


@pytest.mark.slow
def test_minimize_on_workers(tmp_path, cg, tiny_ca_model):
    # not compared byte for byte: OpenMM's minimiser does not repeat itself to the last bit even in one process
    # (two serial runs differ by up to a few 0.01 nm here), so relaxed output is only as reproducible as that
    kw = _args(cg, tiny_ca_model, stride=2, minimize=True, keep_hydrogens=True,
               relax_options={"platform": "Reference", "implicit": None, "max_iterations": 20})
    s = convert(cg["traj"], tmp_path / "aa.xtc", workers=2, **kw)  # frames 0, 2, 4, 6, 8: none is bad
    assert s["frames_written"] == 10 and s["relax_seconds_per_frame"] > 0
    assert s["energy_kj_mol"]["after"] < s["energy_kj_mol"]["before"]
    t = md.load(str(tmp_path / "aa.xtc"), top=s["topology_file"])
    assert t.n_frames == 10 and sum(a.element.symbol == "H" for a in t.topology.atoms) > 100


# ---------------------------------------------------------------------- TLS (--security)
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=30)


def _make_ca(d, name):
    """A throwaway CA ``name``.pem/-key.pem and one certificate it signed (``name``-cert.pem/-cert-key.pem), with
    the openssl commands of docs/scaling.md."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", cwd=d)
    (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
                               "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dask", "-keyout", f"{name}-cert-key.pem",
             "-out", "cert.csr", cwd=d)
    _openssl("x509", "-req", "-in", "cert.csr", "-CA", f"{name}.pem", "-CAkey", f"{name}-key.pem",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}-cert.pem", cwd=d)
    return {"ca": str(d / f"{name}.pem"), "cert": str(d / f"{name}-cert.pem"), "key": str(d / f"{name}-cert-key.pem")}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A TLS-only scheduler on 127.0.0.1 with one in-process worker, both with a certificate of a throwaway CA;
    yields (address, that CA's files, a foreign CA's files)."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    from distributed import LocalCluster
    from distributed.security import Security

    d = tmp_path_factory.mktemp("tls")
    ours, foreign = _make_ca(d, "ca"), _make_ca(d / "foreign", "rogue")
    sec = Security(tls_ca_file=ours["ca"], tls_scheduler_cert=ours["cert"], tls_scheduler_key=ours["key"],
                   tls_worker_cert=ours["cert"], tls_worker_key=ours["key"], tls_client_cert=ours["cert"],
                   tls_client_key=ours["key"], require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls", host="127.0.0.1",
                      security=sec, dashboard_address=None, silence_logs=50) as cluster:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        yield cluster.scheduler_address, ours, foreign


def _security_file(path, files, **extra):
    import yaml

    path.write_text(yaml.safe_dump({"tls_ca_file": files["ca"], "tls_client_cert": files["cert"],
                                    "tls_client_key": files["key"], **extra}))
    return str(path)


def _convert_cli(cg, tiny_ca_model, out, *extra):
    return main(["convert", cg["traj"], "-t", cg["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
                 "--chunk", "2", "--samples", "2", "--seed", "3", "--device", "cpu", *extra])


def test_tls_scheduler_refuses_a_client_without_credentials(tmp_path, cg, tiny_ca_model, tls_cluster, monkeypatch,
                                                             capsys):
    from distributed import Client
    from distributed.security import Security

    address, ours, foreign = tls_cluster
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 3)
    # no credentials: one line, before any connection
    rc = _convert_cli(cg, tiny_ca_model, tmp_path / "aa.xtc", "--scheduler", address)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "uses TLS and needs credentials" in err and "--security FILE" in err
    # a certificate of another CA: the scheduler itself refuses it
    rogue = Security(tls_ca_file=foreign["ca"], tls_client_cert=foreign["cert"], tls_client_key=foreign["key"],
                     require_encryption=True)
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=rogue, timeout=3)
    rc = _convert_cli(cg, tiny_ca_model, tmp_path / "aa.xtc", "--scheduler", address, "--security",
                      _security_file(tmp_path / "rogue.yaml", foreign))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "cannot reach the Dask scheduler" in err and "signed by the CA" in err
    assert not list(tmp_path.glob("aa*"))


def test_tls_scheduler_with_security_file_is_byte_identical(tmp_path, cg, tiny_ca_model, serial, tls_cluster,
                                                            capsys):
    address, ours, _ = tls_cluster
    out = tmp_path / "aa.xtc"
    rc = _convert_cli(cg, tiny_ca_model, out, "--scheduler", address, "--security",
                      _security_file(tmp_path / "sec.yaml", ours))
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert out.read_bytes() == serial and "on 1 Dask worker(s)" in capsys.readouterr().out


def test_tls_credentials_from_the_dask_config(tmp_path, cg, tiny_ca_model, serial, tls_cluster):
    import dask

    address, ours, _ = tls_cluster
    out = tmp_path / "aa.xtc"
    with dask.config.set({"distributed.comm.tls.ca-file": ours["ca"], "distributed.comm.tls.client.cert": ours["cert"],
                          "distributed.comm.tls.client.key": ours["key"]}), pytest.warns(BadFrameWarning):
        s = convert(cg["traj"], out, scheduler=address, **_args(cg, tiny_ca_model))
    assert s["workers"] == 1 and out.read_bytes() == serial


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("tls_ca_file: [unclosed", "is not readable YAML"),
    ("- a list", "must be a mapping"),
    ("tls_ca_file: ca.pem\ntls_client_cert: c.pem\ntls_cert: x\n", "unknown key(s) tls_cert"),
    ("tls_client_cert: c.pem\n", "lacks tls_ca_file"),
    ("distributed: {comm: {tls: {ca-file: ca.pem}}}\n", "lacks tls_client_cert"),
    ("tls_ca_file: nowhere.pem\ntls_client_cert: c.pem\n", "tls_ca_file '"),
    ("tls_ca_file: ca.pem\ntls_client_cert: ca.pem\ntls_client_key: ca.pem\n", "the TLS files do not load"),
    ("tls_ca_file: ca.pem\ntls_client_cert: c.pem\nrequire_encryption: maybe\n", "require_encryption must be"),
])
def test_bad_security_file_is_one_line(tmp_path, cg, tiny_ca_model, content, message, monkeypatch, capsys):
    def no_cluster(*args, **kwargs):
        raise AssertionError("the cluster was contacted")

    monkeypatch.setattr("distributed.Client", no_cluster)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "c.pem").write_text("not a certificate\n")
    sec = tmp_path / "sec.yaml"
    if content is not None:
        sec.write_text(content)
    rc = _convert_cli(cg, tiny_ca_model, tmp_path / "aa.xtc", "--scheduler", "tls://127.0.0.1:9",
                      "--security", str(sec))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert "--security file" in err and not list(tmp_path.glob("aa*"))


def test_security_needs_a_tls_scheduler(tmp_path, cg, tiny_ca_model, tls_cluster, capsys):
    sec = _security_file(tmp_path / "sec.yaml", tls_cluster[1])
    for extra, message in [(["--workers", "1"], "--security is for --scheduler"),
                           (["--scheduler", "tcp://127.0.0.1:9"], "not tls://")]:
        rc = _convert_cli(cg, tiny_ca_model, tmp_path / "aa.xtc", *extra, "--security", sec)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
