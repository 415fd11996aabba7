"""``convert`` on a Dask cluster: workers backmap and relax chunks, the client writes them in frame order.

:func:`convert_on_cluster` is what :func:`~openmm_backmap.run.conversion.convert_trajectory` runs with
``client=``, ``workers=`` or ``scheduler=`` (``openmm-backmap convert --workers N`` / ``--scheduler ADDRESS``).
Dask (``pip install "openmm-backmap[distributed]"``) is imported only here.

* The frames are cut into the serial run's chunks; chunk ``k`` gets the
  seeds of its first good frame's index among all good frames
  (:meth:`BackmapPipeline.compute <openmm_backmap.run.pipeline.BackmapPipeline.compute>`),
  and with relaxation every worker builds its relaxer on the first chunk's
  first structure, so the output is byte-identical to the serial run's.
* Each worker process builds one compute-only
  :class:`~openmm_backmap.run.pipeline.BackmapPipeline` (model and relaxer)
  per run, cached under a key of the model and the options, not per chunk.
* Workers that see the input file (same path, same size) read their chunks
  themselves; otherwise this process reads and ships them. At most
  ``2 x workers`` chunks are in flight, so memory stays bounded.
* Results come back as :class:`~openmm_backmap.run.pipeline.ChunkResult` and
  are written by this process's pipeline, atomically as in the serial run.
  Warnings raised on a worker are raised again here.
* A worker that dies loses its tasks; Dask runs them again elsewhere (its
  ``allowed-failures``), so the output stays complete.
* The cluster is trusted (as Dask states): results are unpickled here, so anyone
  who can join the scheduler can run code in this process. ``security=``
  (``--security FILE``, :func:`load_security`) or Dask's ``distributed.comm.tls.*``
  config gives the client TLS certificates; a ``tls://`` scheduler without them
  is refused before any connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import warnings
from collections import deque

import numpy as np

from ..structure import InputError
from ..structure.errors import option_name
from .pipeline import BackmapPipeline, good_frames

__all__ = ["convert_on_cluster", "load_security", "CONNECT_TIMEOUT_S", "REQUIRED_PACKAGES", "SECURITY_KEYS"]

#: Seconds to wait for a scheduler (``--scheduler``) to answer, and for its first worker.
CONNECT_TIMEOUT_S = 10
#: What a worker must be able to import.
REQUIRED_PACKAGES = ("openmm_backmap", "torch", "openmm", "mdtraj", "numpy")

#: The keys of a ``--security`` file, and the Dask config key each one stands for.
SECURITY_KEYS = {"tls_ca_file": "distributed.comm.tls.ca-file",
                 "tls_client_cert": "distributed.comm.tls.client.cert",
                 "tls_client_key": "distributed.comm.tls.client.key",
                 "require_encryption": "distributed.comm.require-encryption",
                 "tls_ciphers": "distributed.comm.tls.ciphers"}

# The compute-only pipeline of this worker process, by run key: built on a worker's first chunk, reused after.
_WORKER_PIPELINES: dict = {}


def convert_on_cluster(plan, client=None, workers=None, scheduler=None, security=None) -> dict:
    """Run a planned conversion on a Dask cluster; the summary of :func:`convert_trajectory` plus ``workers``.

    Parameters
    ----------
    plan : ConversionPlan
        From :func:`~openmm_backmap.run.conversion.convert_trajectory`, which calls this.
    client : distributed.Client, optional
        An existing client (not closed here).
    workers : int, optional
        Start a local cluster of this many single-threaded worker processes (closed at the end).
    scheduler : str, optional
        Connect to this scheduler address (``dask scheduler``).
    security : str, os.PathLike or distributed.security.Security, optional
        With ``scheduler`` only: the client's TLS credentials, a file read by
        :func:`load_security` or a ``Security``. Without it, Dask's config
        (``distributed.comm.tls.*``) is used; a ``tls://`` scheduler needs one
        of the two.

    Raises
    ------
    InputError
        Dask not installed, the scheduler unreachable or without workers, a
        worker that cannot import a :data:`REQUIRED_PACKAGES` package, or
        missing or bad TLS credentials.

    Examples
    --------
    >>> convert_trajectory('cg.dcd', 'aa.dcd', topology='cg.pdb', seed=1, workers=2)  # doctest: +SKIP
    """
    with _connect(client, workers, scheduler, security) as cl:
        n_workers = _check_workers(cl, plan)
        summary = _run(cl, plan, n_workers)
    return {**summary, "workers": n_workers}


def load_security(path):
    """The client's TLS credentials from a small YAML file, as a ``distributed.security.Security``.

    The file names ``tls_ca_file`` (the CA that signed the cluster's
    certificates), ``tls_client_cert`` and ``tls_client_key`` (this client's
    certificate and key; the key may be left out when the certificate file
    holds it), and optionally ``require_encryption`` (default true) and
    ``tls_ciphers``; or it is a Dask config file with the same settings under
    ``distributed.comm`` (:data:`SECURITY_KEYS`). Relative paths are taken from
    the file's folder.

    Raises
    ------
    InputError
        The file missing, not YAML, with unknown or missing keys, or naming
        files that do not exist (one line each).

    Examples
    --------
    >>> load_security('sec.yaml')  # doctest: +SKIP
    Security(require_encryption=True, tls_ca_file=..., tls_client_cert=..., tls_client_key=...)
    """
    import yaml

    name = option_name("--security file", "security file")
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise InputError(f"{name} {path!r} does not exist")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise InputError(f"{name} {path!r} is not readable YAML ({' '.join(str(err).split())[:160]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{name} {path!r} must be a mapping with the keys {', '.join(SECURITY_KEYS)}")
    if "distributed" in data:  # a Dask config file
        def at(*keys):
            node = data
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            return node

        kwargs = {key: at(*dotted.split(".")) for key, dotted in SECURITY_KEYS.items()}
    else:
        unknown = sorted(map(str, set(data) - set(SECURITY_KEYS)))
        if unknown:
            raise InputError(f"{name} {path!r} has unknown key(s) {', '.join(unknown)}; the keys are "
                             f"{', '.join(SECURITY_KEYS)}")
        kwargs = dict(data)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    missing = [key for key in ("tls_ca_file", "tls_client_cert") if not kwargs.get(key)]
    if missing:
        raise InputError(f"{name} {path!r} lacks {' and '.join(missing)} (the CA of the cluster and this client's "
                         "certificate signed by it)")
    kwargs.setdefault("require_encryption", True)
    if not isinstance(kwargs["require_encryption"], bool):
        raise InputError(f"{name} {path!r}: require_encryption must be true or false")
    for key in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        if key in kwargs:
            kwargs[key] = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(str(kwargs[key])))
    from distributed.security import Security

    return _checked(Security(**kwargs), f"{name} {path!r}")


def _checked(security, source):
    """``security`` after checking that its files exist and load (``InputError`` naming ``source`` if not)."""
    import ssl

    for key in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        value = getattr(security, key, None)
        if value and "\n" not in value and not os.path.isfile(value):  # Dask takes PEM text too
            raise InputError(f"{source}: {key} {value!r} does not exist")
    try:
        security.get_connection_args("client")  # loads the CA, certificate and key
    except (ssl.SSLError, OSError, ValueError, TypeError) as err:
        raise InputError(f"{source}: the TLS files do not load ({' '.join(str(err).split())[:160]}); they must be "
                         "PEM files, the key matching the certificate") from None
    return security


def _security(security, scheduler):
    """The ``Security`` to reach ``scheduler`` with: from ``security``, else Dask's config (``InputError`` when a
    ``tls://`` address gets no credentials or credentials meet a plain address)."""
    from distributed.security import Security

    if security is None:
        security = _checked(Security(), "the Dask config (distributed.comm.tls)")
        source = "the Dask config (distributed.comm.require-encryption)"
    elif isinstance(security, Security):
        security = _checked(security, option_name("--security", "security"))
        source = option_name("--security", "security")
    else:
        security = load_security(security)
        source = option_name("--security file", "security file")
    tls = scheduler.partition("://")[0].lower() == "tls" if "://" in scheduler else False
    if tls and not (security.tls_ca_file and security.tls_client_cert):
        raise InputError(f"the Dask scheduler {scheduler!r} uses TLS and needs credentials: give "
                         f"{option_name('--security FILE', 'security=FILE')} (tls_ca_file, tls_client_cert, "
                         "tls_client_key) or set distributed.comm.tls.ca-file and distributed.comm.tls.client.cert "
                         "and .key in the Dask config")
    if not tls and security.require_encryption:
        raise InputError(f"{source} requires encryption, but the scheduler address {scheduler!r} is not tls://; "
                         "start the scheduler with TLS and give its tls:// address")
    return security


@contextlib.contextmanager
def _connect(client, workers, scheduler, security=None):
    if security is not None and scheduler is None:
        raise InputError(f"{option_name('--security', 'security')} is for {option_name('--scheduler', 'scheduler')} "
                         "(a cluster this run does not start)")
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(f"{option_name('--workers and --scheduler', 'workers and scheduler')} need Dask: "
                         "pip install 'dask[distributed]'") from None
    if scheduler is not None:
        scheduler = str(scheduler)
        sec = _security(security, scheduler)
        try:
            cl = Client(scheduler, timeout=CONNECT_TIMEOUT_S, security=sec)
        except (OSError, TimeoutError, ValueError) as err:
            why = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            hint = ("; with TLS, the certificate must be signed by the CA the scheduler trusts, and the scheduler's "
                    "by tls_ca_file") if sec.tls_client_cert else ""
            raise InputError(f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S} s "
                             f"({why}); start it with 'dask scheduler' and check the address{hint}") from None
        with cl:
            yield cl
        return
    # one thread per worker process: torch and OpenMM already use the cores of their process
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as cl:
        yield cl


def _import_probe():
    """A function that lists the packages a worker cannot import; made inside a function so that Dask ships its
    code (by value) rather than a reference into a package the worker may lack."""

    def missing(names):
        import importlib

        out = {}
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as err:  # noqa: BLE001 - any failure to import means the same to the user
                out[name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return out

    return missing


def _check_workers(client, plan):
    """Number of workers, after checking that each one can import the package (``InputError`` if not)."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise InputError(f"the Dask scheduler has no workers after {CONNECT_TIMEOUT_S} s; start some with "
                         "'dask worker <scheduler address>'") from None
    missing = client.run(_import_probe(), list(REQUIRED_PACKAGES))
    for address, bad in sorted(missing.items()):
        if bad:
            name, why = next(iter(bad.items()))
            raise InputError(f"Dask worker {address} cannot import {name!r} ({why}); install openmm-backmap and "
                             "its dependencies in the workers' Python environment")
    return len(missing)


def _workers_see(client, path):
    """Whether every worker sees ``path`` as this process does (same size)."""
    size = os.path.getsize(path)
    try:
        sizes = client.run(os.path.getsize, os.path.abspath(path))
    except OSError:
        return False
    return all(s == size for s in sizes.values())


class _Spec:
    """What a worker needs to build its pipeline and read its chunks (pickled into every task, so small)."""

    def __init__(self, plan, pipe, n_particles, kwargs, bonds, worker_reads):
        self.options = dataclasses.replace(pipe.options, model=pipe.model.path, seed=pipe.seed)
        self.n_particles = n_particles
        self.kwargs = kwargs
        self.bonds = bonds
        self.plan = dataclasses.replace(plan, options=None, progress=False) if worker_reads else None
        self.key = hashlib.sha1(pickle.dumps((self.options, n_particles, kwargs))).hexdigest()


def _worker_pipeline(spec):
    pipe = _WORKER_PIPELINES.get(spec.key)
    if pipe is None:
        _WORKER_PIPELINES.clear()  # one run at a time per worker: drop the last run's model and relaxer
        pipe = _WORKER_PIPELINES[spec.key] = BackmapPipeline(None, spec.n_particles, spec.options, **spec.kwargs)
    return pipe


def _read_task(spec, k):
    """Chunk ``k`` read on the worker: (good frames, their times, the good-frame mask)."""
    xyz, time_ps, box = next(spec.plan.frames(first_chunk=k), (np.zeros((0, spec.n_particles, 3)), None, None))
    xyz = spec.plan.whole(xyz, box, spec.bonds)
    good = good_frames(xyz)
    return xyz[good], None if time_ps is None else time_ps[good], good


def _mask_of(read):
    return read[2]


def _template_of(result):
    return result[0].template


def _compute_task(spec, read, first, template):
    """Backmap (and relax) one chunk; returns (ChunkResult, times, warnings as (message, category))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = _worker_pipeline(spec)
        pipe.check_breaks(read[0])  # warns here; the client re-raises the warnings (the count stays on the worker)
        result = pipe.compute(read[0], first, template)
    return result, read[1], [(str(w.message), w.category) for w in caught]


def _run(client, plan, n_workers):
    n_frames = plan.n_frames()
    worker_reads = n_frames is not None and _workers_see(client, plan.input)  # else read here and ship
    local = plan.frames()  # the first chunk is read here in any case: it sets up the pipeline
    xyz0, time0, box0 = next(local, (None, None, None))
    if xyz0 is None:
        raise InputError(f"{plan.input!r} has no frames")
    n, kwargs, bonds = plan.pipeline_args()
    pipe = BackmapPipeline(plan.output, n, plan.options, **kwargs, atomic=True)
    spec = _Spec(plan, pipe, n, kwargs, bonds, worker_reads)
    window = 2 * max(1, n_workers)
    pending = deque()  # (future of (ChunkResult, times, warnings), CG frames read), in frame order
    bar = plan.progress_bar(pipe) if plan.progress else None
    first = 0  # good frames before the next chunk: its seeds
    template = None  # with relaxation: the future of the first structure, which every relaxer is built on
    k = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                if k == 0 or not worker_reads:
                    xyz, time_ps, box = (xyz0, time0, box0) if k == 0 else next(local, (None, None, None))
                    if xyz is None:
                        exhausted = True
                        break
                    xyz = plan.whole(xyz, box, bonds)
                    good = good_frames(xyz)
                    read = (xyz[good], None if time_ps is None else time_ps[good], good)
                elif k * plan.chunk >= n_frames:
                    exhausted = True
                    break
                else:
                    read = client.submit(_read_task, spec, k, pure=False, priority=1)
                    good = client.submit(_mask_of, read, pure=False, priority=1).result()
                base = k * plan.chunk
                pipe.report_bad_frames(good, index=np.arange(base, base + len(good)) * plan.stride)
                fut = client.submit(_compute_task, spec, read, first, template, pure=False)
                if template is None and plan.options.minimize and good.any():
                    template = client.submit(_template_of, fut, pure=False, priority=1)
                pending.append((fut, len(good)))
                first += int(good.sum())
                k += 1
            if not pending:
                break
            fut, n_read = pending.popleft()
            result, time_ps, caught = fut.result()
            for message, category in caught:  # the user's warnings (bad frames, relaxation), not library noise
                if issubclass(category, UserWarning):
                    warnings.warn(message, category, stacklevel=2)
            pipe.write(result, time_ps)
            if bar is not None:
                bar.update(n_read)
    except BaseException:
        client.cancel([f for f, _ in pending] + ([template] if template is not None else []))
        pipe.abort()  # a failed or interrupted run leaves nothing under the output's name
        raise
    finally:
        if bar is not None:
            bar.close()
        pipe.close()
    return plan.summary(pipe)
