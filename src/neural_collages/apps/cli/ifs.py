"""``collage ifs``: fit IFS fractals to point clouds, render them, and the classic-fractal gallery."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigurationError
from .common import check_output, positive_int, set_threads


def _count(text: str) -> int:
    """argparse type: a positive count, also written like ``1e6``."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def add_parser(sub) -> None:
    p = sub.add_parser("ifs", help="IFS fractals: fit affine maps to point clouds, render attractors",
                       description="The set version of the collage idea: fit N contractive affine maps whose "
                       "attractor approximates a 2-D or 3-D point cloud, render it, and recover classic fractals.")
    ifs_sub = p.add_subparsers(dest="ifs_command", metavar="IFS_COMMAND")

    f = ifs_sub.add_parser("fit", help="fit an IFS to a point cloud and save it as ifs.json",
                           description="Read a cloud (.npy, .xyz/.txt, .ply, or an image whose dark pixels are the "
                           "points), fit --maps contractive affine maps by the collage theorem (starts read off the "
                           "cloud's self-similarity, and random restarts) or "
                           "predict them with a trained encoder (--encoder), and write ifs.json (docs/ifs.md).")
    f.add_argument("cloud", type=Path, help="point cloud: .npy, .xyz, .txt, .ply, or .png (dark pixels)")
    f.add_argument("--maps", type=positive_int, default=4, help="number of affine maps, 1-64 (default: %(default)s)")
    f.add_argument("-o", "--output", type=Path, required=True, help="the IFS file to write (.json)")
    f.add_argument("--restarts", type=positive_int, default=None, help="random restarts (default: 24)")
    f.add_argument("--steps", type=int, default=None, help="fitting steps per kept restart (default: 200)")
    f.add_argument("--no-self-cover", action="store_true",
                   help="random restarts only: no starts from the cloud's largest copy of itself, no reseeding")
    f.add_argument("--encoder", nargs="?", const="shipped", default=None,
                   help="predict the maps with a trained encoder (a shipped name such as ifs-2d-4maps, or a "
                   ".safetensors file; alone: the shipped one for this dimension and --maps)")
    f.add_argument("--refine", type=int, default=200,
                   help="with --encoder: fitting steps after the prediction (default: %(default)s; 0 = none)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    f.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    f.add_argument("--force", action="store_true", help="overwrite an existing output file")
    f.set_defaults(handler=run_fit)

    r = ifs_sub.add_parser("render", help="render an ifs.json: a log-density image or the attractor's points",
                           description="Run the chaos game on the maps of an ifs.json and write a log-density image "
                           "(.png) or the points (.npy, .ply) in the fitted cloud's own coordinates.")
    r.add_argument("ifs", type=Path, help="an IFS file written by `collage ifs fit`")
    r.add_argument("output", type=Path, help="OUT.png (density image), OUT.npy or OUT.ply (points)")
    r.add_argument("--points", type=_count, default=1_000_000, help="points to draw (default: 1e6)")
    r.add_argument("--size", type=positive_int, default=1024, help="image side in pixels (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    r.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    r.add_argument("--force", action="store_true", help="overwrite an existing output file")
    r.set_defaults(handler=run_render)

    g = ifs_sub.add_parser("gallery", help="recover the fern, the Sierpinski triangle and a 3-D fractal from clouds",
                           description="Sample each classic IFS's attractor, fit an IFS to the cloud, and write a "
                           "figure (gallery.png), each fitted IFS (<name>.json) and the distances (gallery.json).")
    g.add_argument("output_dir", type=Path, help="folder for gallery.png, gallery.json and the fitted IFS files")
    g.add_argument("--points", type=_count, default=100_000, help="points per cloud (default: 1e5)")
    g.add_argument("--names", default="fern,sierpinski,tetrahedron,ring",
                   help="comma-separated: fern, sierpinski, tetrahedron, ring (default: all)")
    g.add_argument("--restarts", type=positive_int, default=None, help="random restarts per fit (default: 24)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    g.set_defaults(handler=run_gallery)

    t = ifs_sub.add_parser("train-encoder", help="train the amortised IFS encoder on random IFS attractors",
                           description="Train (or --resume) a point-cloud encoder that predicts --maps contractive "
                           "maps in one pass, on attractors of random IFS, for --minutes (safetensors, saved every "
                           "minute).")
    t.add_argument("output", type=Path, help="encoder weights (.safetensors)")
    t.add_argument("--dim", type=int, choices=(2, 3), default=2, help="dimension (default: %(default)s)")
    t.add_argument("--maps", type=positive_int, default=4, help="number of maps (default: %(default)s)")
    t.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget (default: %(default)s)")
    t.add_argument("--batch", type=positive_int, default=32, help="clouds per step (default: %(default)s)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue training the encoder in OUTPUT")
    t.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    t.add_argument("--force", action="store_true", help="overwrite an existing OUTPUT when not resuming")
    t.set_defaults(handler=run_train_encoder)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise ConfigurationError(f"--seed must lie in 0..2^63-1, got {seed}")
    return seed


def run_fit(args) -> int:
    from tqdm import tqdm

    from ...ifs.encoder import find_encoder, load_encoder
    from ...ifs.fit import FitOptions, amortised_fit, check_cloud, fit_ifs, planned_steps
    from ...ifs.io import read_cloud, write_ifs
    from ...ifs.model import check_num_maps

    set_threads(args.threads)
    check_output(args.output, args.force, inputs=(args.cloud,), suffixes={".json"})
    if args.steps is not None and not 0 <= args.steps <= 100_000:
        raise ConfigurationError(f"--steps must lie in 0..100000, got {args.steps}")
    if not 0 <= args.refine <= 100_000:
        raise ConfigurationError(f"--refine must lie in 0..100000, got {args.refine}")
    check_num_maps(args.maps)
    cloud = read_cloud(args.cloud)
    check_cloud(cloud, args.maps)  # before any progress bar: an error is one line
    kwargs = {"seed": _seed(args.seed)}
    if args.restarts is not None:
        kwargs["restarts"] = args.restarts
        kwargs["keep"] = min(4, args.restarts)
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if args.no_self_cover:
        if args.encoder is not None:
            raise ConfigurationError("--no-self-cover applies to fitting from scratch, not to --encoder (its prediction is the start)")
        kwargs["self_cover"] = False
        kwargs["reseed_rounds"] = 0
    options = FitOptions(**kwargs)
    if args.encoder is not None:
        spec = None if args.encoder == "shipped" else args.encoder
        encoder, _ = load_encoder(find_encoder(spec, cloud.shape[1], args.maps))
        if encoder.config.num_maps != args.maps:
            raise ConfigurationError(f"the encoder predicts {encoder.config.num_maps} maps, not --maps {args.maps}")
        with tqdm(total=args.refine, desc="ifs refine", unit="step", leave=False) as bar:
            result = amortised_fit(cloud, encoder, args.refine, options, progress=bar.update)
        how = f"encoder + {args.refine} refinement steps"
    else:
        with tqdm(total=planned_steps(options), desc="ifs fit", unit="step", leave=False) as bar:
            result = fit_ifs(cloud, args.maps, options, progress=bar.update)
        how = f"self-cover starts and {options.restarts} restarts" if options.self_cover else \
            f"{options.restarts} restarts"
    A, t, p = result.maps_in_cloud_coordinates()
    scale = result.normalisation.scale
    fit = {"cloud": args.cloud.name, "points": int(cloud.shape[0]), "method": how, "seconds": round(result.seconds, 3),
           "attractor_chamfer": result.attractor_chamfer * scale, "collage_loss": result.collage_loss * scale,
           "contraction_bound": result.model.contraction_bound()}
    write_ifs(args.output, A, t, p, fit=fit, force=args.force)
    print(f"{args.cloud} ({cloud.shape[0]:,} {cloud.shape[1]}-D points) -> {args.output}: {args.maps} maps, {how}, "
          f"{result.seconds:.1f} s; attractor Chamfer {fit['attractor_chamfer']:.4g} (cloud units), "
          f"contraction {fit['contraction_bound']:.3f}")
    return 0


def run_render(args) -> int:
    from tqdm import tqdm

    from ...ifs.io import POINT_SUFFIXES, read_ifs, write_points
    from ...ifs.render import MAX_POINTS, MAX_SIZE, chaos_game, density_image
    from ...imaging.io import IMAGE_SUFFIXES, save_image

    set_threads(args.threads)
    check_output(args.output, args.force, inputs=(args.ifs,), suffixes=set(IMAGE_SUFFIXES) | set(POINT_SUFFIXES))
    if args.points > MAX_POINTS:
        raise ConfigurationError(f"--points must be at most {MAX_POINTS:,}, got {args.points:,}")
    if args.size > MAX_SIZE:
        raise ConfigurationError(f"--size must be at most {MAX_SIZE}, got {args.size}")
    A, t, p = read_ifs(args.ifs)
    with tqdm(total=args.points, desc="chaos game", unit="pt", unit_scale=True, leave=False) as bar:
        points, stats = chaos_game(A, t, p, args.points, seed=_seed(args.seed), progress=bar.update,
                                   return_stats=True)
    if args.output.suffix.lower() in POINT_SUFFIXES:
        write_points(points, args.output, force=args.force)
    else:
        save_image(density_image(points, args.size), args.output, force=args.force)
    print(f"{args.ifs} -> {args.output}: {args.points:,} points in {stats.seconds:.2f} s "
          f"({stats.points_per_second / 1e6:.1f} M points/s)")
    return 0


def run_gallery(args) -> int:
    from tqdm import tqdm

    from ...ifs.fit import FitOptions
    from ...ifs.gallery import SHAPES, gallery, save_gallery

    set_threads(args.threads)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise ConfigurationError(f"unknown gallery names {unknown or names}; choose from {', '.join(SHAPES)}")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise ConfigurationError(f"{args.output_dir} exists and is not a folder")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    planned = [args.output_dir / "gallery.png", args.output_dir / "gallery.json"] + \
              [args.output_dir / f"{n}.json" for n in names]
    for path in planned:
        check_output(path, args.force)
    with tqdm(total=len(names), desc="gallery", unit="fractal", leave=False) as bar:
        options = FitOptions(seed=_seed(args.seed)) if args.restarts is None else \
            FitOptions(seed=_seed(args.seed), restarts=args.restarts, keep=min(4, args.restarts))
        entries = gallery(names, points=args.points, options=options, seed=args.seed,
                          progress=lambda name: bar.set_postfix(fitting=name))
        bar.update(len(names))
    save_gallery(entries, args.output_dir, force=args.force)
    for e in entries:
        print(f"{e.name:12s} {e.dim}-D {e.maps} maps: attractor Chamfer {e.chamfer_fitted:.4g} vs noise floor "
              f"{e.chamfer_noise_floor:.4g} (x{e.ratio:.2f}), {e.fit_seconds:.1f} s")
    print(f"wrote {planned[0]}, {planned[1]} and {len(names)} IFS files")
    return 0


def run_train_encoder(args) -> int:
    import math

    from tqdm import tqdm

    from ...ifs.encoder import EncoderConfig
    from ...training.ifs_encoder import train_encoder

    set_threads(args.threads)
    if not (math.isfinite(args.minutes) and 0 < args.minutes <= 10_000):
        raise ConfigurationError(f"--minutes must lie in (0, 10000], got {args.minutes}")
    if not (math.isfinite(args.lr) and 0 < args.lr < 1):
        raise ConfigurationError(f"--lr must lie in (0, 1), got {args.lr}")
    if args.output.suffix != ".safetensors":
        raise ConfigurationError(f"{args.output}: encoder weights are written as .safetensors")
    if not args.resume:
        check_output(args.output, args.force)
    elif not args.output.is_file():
        raise ConfigurationError(f"--resume: {args.output} does not exist")
    config = EncoderConfig(args.dim, args.maps)
    with tqdm(desc="train ifs encoder", unit="step") as bar:
        def progress(step, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        done = train_encoder(args.output, config, args.minutes, batch=args.batch, lr=args.lr, seed=_seed(args.seed),
                             resume=args.resume, progress=progress)
    print(f"{args.output}: {done['steps']} steps in {done['seconds'] / 60:.1f} min, recent collage loss "
          f"{done['recent_loss']:.4f}")
    return 0
