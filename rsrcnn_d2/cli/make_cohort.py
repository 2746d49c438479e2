"""Write a seeded synthetic PWML cohort (NIfTI, nnU-Net raw layout) for demos, experiments, tests.

    python tools/make_synthetic_cohort.py OUT [--subjects 30] [--seed 0] [--workers 2]
                                              [--slices SLICES_DIR] [--overwrite]
    python tools/make_synthetic_cohort.py OUT --phantom [--size 64] [--depth 6] ...

Default: the anatomy-based cohort (rsrcnn_d2.synth.anatomy): the MNI152 2009a
template scaled to a preterm head and deformed per subject, neonatal T1w
contrast, 3-D punctate lesions in deep and periventricular white matter,
axial acquisitions of 0.6-0.8 mm in-plane and 1.2-2 mm slices, int16.
--slices also writes the lesion slices as 8-bit head crops in the reference
implementation's layout (SLICES/input/<case>/<slice>.png + gt/...).
--phantom: the fast cartoon phantom (rsrcnn_d2.synth.phantom) for unit tests.
Then convert: ``python tools/prepare_pwml.py OUT``. The generator says how many
lesion-free subjects it wrote (about --lesion-free-fraction of them); the
converter's default (lesion slices only) leaves them out with a warning, its
--all-slices keeps them. Existing cases are kept unless --overwrite. See
datasets/README.md.
The program behind tools/make_synthetic_cohort.py (also ``rsrcnn-make-cohort``,
``python -m rsrcnn_d2.cli.make_cohort``).
"""

import argparse
import sys
from pathlib import Path

__all__ = ["parse_args", "main"]

# the anatomy options, whose defaults are the generator's (rsrcnn_d2.synth.AnatomyParams):
# {option: AnatomyParams field}, filled in after parsing
ANATOMY_DEFAULTS = {
    "lesion_free_fraction": "lesion_free_fraction",
    "lesions": "lesions_per_subject",
    "in_plane_mm": "in_plane_mm",
    "slice_mm": "slice_mm",
}
PHANTOM_OPTIONS = {
    "--size": dict(type=int, help="in-plane size (pixels; default 64)"),
    "--depth": dict(type=int, help="number of axial slices (default 6)"),
    "--lesion-fraction": dict(
        type=float, help="fraction of slices with lesions, at least one per subject (default 0.3)"
    ),
    "--spacing": dict(type=float, nargs=3, help="voxel size, mm (default 0.8 0.8 2.0)"),
    "--distinct-slices": dict(
        type=int,
        help="generate only this many distinct slices per kind and "
        "repeat them (fast; default 0 = all distinct)",
    ),
}
PHANTOM_DEFAULTS = {
    "--size": 64,
    "--depth": 6,
    "--lesion-fraction": 0.3,
    "--spacing": (0.8, 0.8, 2.0),
    "--distinct-slices": 0,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", help="output folder (imagesTr/, labelsTr/, dataset.json)")
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes")
    p.add_argument("--overwrite", action="store_true")
    anatomy = p.add_argument_group("anatomy-based cohort (default)")
    anatomy.add_argument(
        "--slices",
        metavar="SLICES_DIR",
        help="also write lesion slices as reference-style PNG head crops here",
    )
    anatomy.add_argument(
        "--lesion-free-fraction",
        type=float,
        help="share of subjects drawn without lesions (default: the generator's, "
        "AnatomyParams.lesion_free_fraction)",
    )
    anatomy.add_argument(
        "--lesions",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="lesions per lesion subject (default: AnatomyParams.lesions_per_subject)",
    )
    anatomy.add_argument(
        "--in-plane-mm",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="range of the in-plane voxel size (default: AnatomyParams.in_plane_mm)",
    )
    anatomy.add_argument(
        "--slice-mm",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="range of the slice thickness (default: AnatomyParams.slice_mm)",
    )
    phantom = p.add_argument_group("phantom (--phantom only)")
    phantom.add_argument("--phantom", action="store_true", help="the fast cartoon phantom instead")
    for flag, kwargs in PHANTOM_OPTIONS.items():
        phantom.add_argument(flag, default=None, **kwargs)
    args = p.parse_args(argv)
    given = [
        flag for flag in PHANTOM_OPTIONS if getattr(args, flag[2:].replace("-", "_")) is not None
    ]
    if given and not args.phantom:
        p.error(f"{', '.join(given)}: phantom options; add --phantom or drop them")
    for flag, default in PHANTOM_DEFAULTS.items():
        name = flag[2:].replace("-", "_")
        if getattr(args, name) is None:
            setattr(args, name, default)
    if any(getattr(args, name) is None for name in ANATOMY_DEFAULTS):
        from ..synth import AnatomyParams  # the generator, once the arguments are valid

        defaults = AnatomyParams()
        for name, field in ANATOMY_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, getattr(defaults, field))
    return args


def lesion_free_cases(out_dir, cases: list[str]) -> list[str]:
    """The cases whose mask, as written (reused cases too), holds no lesion voxel."""
    from ..data.nifti import read_volume

    labels = Path(out_dir) / "labelsTr"
    return [case for case in cases if not read_volume(labels / f"{case}.nii.gz").canonical.any()]


def _lesion_free_note(lesion_free: list[str]) -> str:
    if not lesion_free:
        return "0 lesion-free"
    shown = ", ".join(lesion_free[:10]) + (", ..." if len(lesion_free) > 10 else "")
    return (
        f"{len(lesion_free)} lesion-free: {shown}; tools/prepare_pwml.py leaves them out by "
        "default, --all-slices keeps them"
    )


def main(argv=None) -> int:
    from ..tool_setup import quiet_known_warnings

    args = parse_args(argv)
    quiet_known_warnings()
    from ..synth import AnatomyParams, write_anatomical_cohort, write_synthetic_cohort

    try:
        if args.phantom:
            if args.slices:
                raise ValueError(
                    "--slices writes the anatomy-based cohort's slices; drop --phantom"
                )
            cases = write_synthetic_cohort(
                args.out,
                args.subjects,
                args.size,
                args.depth,
                args.seed,
                lesion_fraction=args.lesion_fraction,
                spacing=args.spacing,
                distinct_slices=args.distinct_slices,
                workers=args.workers,
                overwrite=args.overwrite,
            )
        else:
            params = AnatomyParams(
                lesion_free_fraction=args.lesion_free_fraction,
                lesions_per_subject=tuple(args.lesions),
                in_plane_mm=tuple(args.in_plane_mm),
                slice_mm=tuple(args.slice_mm),
            )
            cases = write_anatomical_cohort(
                args.out,
                args.subjects,
                args.seed,
                params,
                workers=args.workers,
                slices_dir=args.slices,
                overwrite=args.overwrite,
            )
        lesion_free = lesion_free_cases(args.out, cases)
    except ValueError as e:  # bad arguments and PWMLDataError: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{len(cases)} subjects in {Path(args.out).absolute()} ({_lesion_free_note(lesion_free)})"
        + (f"; PNG slices in {Path(args.slices).absolute()}" if args.slices else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
