from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "openmm_backmap" / "_version.py").read_text(), version)

setup(
    name="openmm-backmap",
    version=version["__version__"],
    description="On-the-fly k-step generative backmapping of coarse-grained OpenMM simulations",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["openmm_backmap", "openmm_backmap.*"]),
    package_data={"openmm_backmap": ["data/*.json", "data/*.pdb", "data/*.pt"]},
    install_requires=[
        "numpy>=1.24",
        "torch>=2.1",
        "torch-geometric>=2.4",
        "openmm>=8.2",
        "mdtraj>=1.9.9",
        "parmed>=4.2",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "scipy>=1.10",
    ],
    extras_require={
        "test": ["pytest>=7.0"],
        "h5": ["tables>=3.8"],  # PyTables, for writing .h5 trajectories
        "bench": ["pulchra>=1.0"],
    },
    entry_points={"console_scripts": ["openmm-backmap=openmm_backmap.cli:main"]},
)
