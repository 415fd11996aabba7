#!/usr/bin/env bash
# Set up the real CG engines (martini_openmm + martinize2, CALVADOS 3, OpenABC) in their own venv, outside the
# repository, for benchmarks/clients/*_run.py. Downloads from PyPI only (pip); the two engines that are not on
# PyPI come as source trees you already have (git clones of github.com/maccallumlab/martini_openmm and
# github.com/KULL-Centre/CALVADOS). Their package folders go on sys.path through a .pth file in the venv; nothing
# of theirs is installed, copied into this repository or built (CALVADOS's setup.py pins old releases and
# downloads files at install time: it is not run).
#
# usage: benchmarks/clients/setup_clients.sh MARTINI_OPENMM_SRC CALVADOS_SRC [CLIENTS_DIR]
#    or: MARTINI_OPENMM_SRC=... CALVADOS_SRC=... CLIENTS_DIR=... benchmarks/clients/setup_clients.sh
#   MARTINI_OPENMM_SRC  folder that holds martini_openmm/ (martini.py, vsites.py)
#   CALVADOS_SRC        folder that holds calvados/ (and examples/, used by calvados_run.py)
#   CLIENTS_DIR         where the venv goes (default /work/clients); the venv is CLIENTS_DIR/venv
#   PYTHON              interpreter for the venv (default python3; martini_openmm imports distutils, so
#                       Python >= 3.12 needs setuptools' shim, which is installed below)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MARTINI_OPENMM_SRC="$(cd "${1:-${MARTINI_OPENMM_SRC:?give the martini_openmm source tree}}" && pwd)"
CALVADOS_SRC="$(cd "${2:-${CALVADOS_SRC:?give the CALVADOS source tree}}" && pwd)"
CLIENTS_DIR="${3:-${CLIENTS_DIR:-/work/clients}}"
PYTHON="${PYTHON:-python3}"

[ -f "$MARTINI_OPENMM_SRC/martini_openmm/martini.py" ] || { echo "error: $MARTINI_OPENMM_SRC has no martini_openmm/martini.py" >&2; exit 2; }
[ -f "$CALVADOS_SRC/calvados/sim.py" ] || { echo "error: $CALVADOS_SRC has no calvados/sim.py" >&2; exit 2; }
[ -s "$CALVADOS_SRC/calvados/BLOCKING/main.py" ] || echo "note: $CALVADOS_SRC/calvados/BLOCKING/main.py is empty (only CALVADOS's analysis uses it)" >&2

mkdir -p "$CLIENTS_DIR"
"$PYTHON" -m venv "$CLIENTS_DIR/venv"
PIP="$CLIENTS_DIR/venv/bin/pip"
VPY="$CLIENTS_DIR/venv/bin/python"
"$PIP" install -q --upgrade pip setuptools
"$PIP" install -q torch==2.13.0   # the local CPU wheel on our machines; any torch >= 2.1 elsewhere
"$PIP" install -q -e "$REPO"
# CALVADOS: numba llvmlite localcider MDAnalysis pandas scipy biopython matplotlib jinja2 pyyaml tqdm (+ mdtraj,
# openmm from openmm-backmap); martinize2 = vermouth (+ mdtraj for -dssp); martini_v3.0.0.itp ships in
# martini-taster; insane for solvated boxes; OpenABC with its extras ("pandas<3": openabc uses pandas 2 API)
"$PIP" install -q numba llvmlite localcider MDAnalysis "pandas<3" scipy biopython matplotlib jinja2 pyyaml tqdm \
    vermouth martini-taster insane openabc PeptideBuilder networkx

SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n%s\n' "$MARTINI_OPENMM_SRC" "$CALVADOS_SRC" > "$SITE/openmm_backmap_clients.pth"

"$VPY" - <<'EOF'
import importlib, importlib.metadata as md
for mod in ("martini_openmm.martini", "calvados", "openabc.forcefields", "vermouth", "taster", "openmm_backmap"):
    m = importlib.import_module(mod)
    print(f"ok {mod:24s} {getattr(m, '__file__', '')}")
for dist in ("openmm", "torch", "numpy", "pandas", "mdtraj", "MDAnalysis", "numba", "vermouth", "martini-taster",
             "insane", "openabc"):
    print(f"   {dist:16s} {md.version(dist)}")
EOF
echo "client venv ready: $CLIENTS_DIR/venv (engines on sys.path via $SITE/openmm_backmap_clients.pth)"
