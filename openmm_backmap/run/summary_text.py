"""The run summary as a person reads it: :func:`format_summary` of a :meth:`~.pipeline.BackmapPipeline.summary`, and
the model batch line of the progress bar (:func:`batch_text`)."""

from __future__ import annotations

__all__ = ["format_summary", "batch_text"]


def format_summary(summary: dict) -> str:
    """A few human-readable lines for a :meth:`BackmapPipeline.summary` result.

    Examples
    --------
    >>> print(format_summary(pipe.summary()))  # doctest: +SKIP
    """
    def f(x, d=1):
        return "n/a" if x is None else f"{x:.{d}f}"

    s = summary
    how = "deterministic" if s.get("deterministic") else f"seed {s['seed']}"  # convert's summary says which
    lines = [f"backmapped {s['frames_in']} CG frame(s) -> {s['frames_written']} structure(s) "
             f"({s['samples']} per frame) with {s['model']} ({how}) in {s['seconds']['total']:.1f} s "
             f"wall-clock ({f(s['frames_per_second'], 2)} CG frames per second of backmapping)"
             + (f" on {s['workers']} Dask worker(s)" if s.get("workers") else "")]
    lines.append(batch_text(s))
    if "segments" in s:
        why = {"bonds": "from bonds", "records": "from chains and residue numbering", "geometry":
               f"{s['breaks_from_geometry']} of the breaks from bead distances alone", "model": "the model's own"}
        lines.append(f"chains: {s['segments']} segment(s) ({why.get(s['break_evidence'], s['break_evidence'])})"
                     + (f"; {s['doubtful_joins']} doubtful join(s) (see the warnings)" if s.get("doubtful_joins")
                        else "")
                     + (f"; {s['break_changes']} frame(s) disagreed with them (see the warnings)"
                        if s.get("break_changes") else ""))
    if s["frames_skipped"]:
        shown = ", ".join(str(i) for i in s.get("skipped_frames", [])[:10])
        more = " ..." if len(s.get("skipped_frames", [])) > 10 else ""
        lines.append(f"skipped {s['frames_skipped']} bad CG frame(s) (input frames {shown}{more}); later output "
                     "frames are shifted by the frames skipped before them")
    if s.get("relax_failures"):
        lines.append(f"relaxation failed for {s['relax_failures']} structure(s) (written as the minimiser left "
                     "them)")
    c, b = s["clash_percent"], s["bond_ok_percent"]
    if s["energy_kj_mol"]["after"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} % -> {f(c['after'])} % after relaxation; "
                     f"bonds within 10 % of the force field's length: {f(b['before'])} % -> {f(b['after'])} %; "
                     f"relaxation {f(s['relax_seconds_per_frame'], 2)} s/frame")
    elif c["before"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} %; bonds within 10 % of the force field's length: "
                     f"{f(b['before'])} % (no relaxation)")
    odd = [f"{s[key]} with {what}" for key, what in (("structures_with_d_residues", "a D residue"),
                                                     ("structures_with_cis_peptides", "a non-proline cis peptide"))
           if s.get(key)]
    if odd:
        lines.append(f"stereochemistry: {' and '.join(odd)} of {s['frames_written']} structure(s) written (see the "
                     "warnings)")
    where = s["output"] + (f" (topology {s['topology_file']})" if s.get("topology_file") else "")
    lines.append(f"wrote {where}")
    return "\n".join(lines)


def batch_text(summary: dict) -> str:
    """The model batch and memory budget of a :meth:`BackmapPipeline.summary` (``chunk``: the frames per
    :meth:`~BackmapPipeline.process` call, where the front end caps them), for the progress bar and the summary.

    Examples
    --------
    >>> batch_text({'chunk': 12, 'batch_frames': 12, 'batch_structures': 24, 'samples': 2, 'max_memory_mb': 2048.0})
    'chunk=12 frames x 2 samples (memory budget 2048 MB)'
    >>> batch_text({'batch_frames': 40, 'batch_structures': 40, 'samples': 1, 'max_memory_mb': 512.0})
    'chunk=40 frames (memory budget 512 MB)'
    >>> batch_text({'batch_frames': 1, 'batch_structures': 3, 'samples': 8, 'max_memory_mb': 1024.0})
    'chunk=3 of the 8 samples of 1 frame (memory budget 1024 MB)'
    """
    s = summary
    budget = f"(memory budget {s['max_memory_mb']:g} MB)"
    if s["batch_structures"] < s["samples"]:
        return f"chunk={s['batch_structures']} of the {s['samples']} samples of 1 frame {budget}"
    frames = min(s.get("chunk") or s["batch_frames"], s["batch_frames"])
    samples = f" x {s['samples']} samples" if s["samples"] > 1 else ""
    return f"chunk={frames} frames{samples} {budget}"
