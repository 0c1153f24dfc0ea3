"""`rkn-ros generate {pendulum,quad_link,pneumatic} --out DIR --sequences N --steps T --seed S`.

Writes a data set folder (``data.npz`` + ``metadata.yaml``, see docs/interfaces.md). Parameters
come from the built-in defaults (identical to ``config/sim/<kind>.yaml``), then ``--config``,
then the command-line options.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rkn_ros.data import generate, generate_sensors
from rkn_ros.data.dataset import DATA_FILE, METADATA_FILE
from rkn_ros.sim.pneumatic import EXCITATIONS, PneumaticParams

KINDS = ("pendulum", "quad_link", "pneumatic")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, received {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, received {value}")
        return value
    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), received {text!r}") \
            from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), received {value}")
    return value


EXAMPLES = """the paper's data sets (Becker et al. 2019):
  rkn-ros generate pendulum --out data/pendulum_noisy --sequences 2000 --steps 75 --noise
  rkn-ros generate pendulum --out data/pendulum_impute --sequences 2000 --steps 75 --drop-prob 0.5
  rkn-ros generate quad_link --out data/quad_link --sequences 4000 --steps 150
more sensors (a second camera, an IMU and a joint encoder on the pendulum):
  rkn-ros generate pendulum --out data/fusion --sequences 2000 --steps 75 \
      --sensors image,image_side,imu,encoder
and the pneumatic joint (100 Hz):
  rkn-ros generate pneumatic --out data/pneumatic --sequences 2000 --steps 150
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rkn-ros generate``."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("kind", choices=KINDS, help="which simulator")
    parser.add_argument("--out", required=True, type=Path, help="output data set folder")
    parser.add_argument("--sequences", required=True, type=_int_at_least(1),
                        help="number of sequences (paper: 2000 pendulum, 4000 quad-link)")
    parser.add_argument("--steps", required=True, type=_int_at_least(6),
                        help="time steps per sequence (paper: 75 pendulum, 150 quad-link)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="random seed; same seed and options give the same bytes")
    parser.add_argument("--config", type=Path,
                        help="YAML with parameters (like config/sim/<kind>.yaml)")
    parser.add_argument("--noise", action="store_true",
                        help="pendulums: the paper's correlated image noise")
    parser.add_argument("--drop-prob", type=_probability, default=None,
                        help="pendulums: probability of dropping a frame (imputation: 0.5); "
                             "pneumatic: of dropping a joint reading")
    parser.add_argument("--image-size", type=_int_at_least(8),
                        help="pendulums: image side in px (default 24, quad-link 48)")
    parser.add_argument("--links", type=_int_at_least(1),
                        help="pendulum: number of links (unit masses and lengths)")
    parser.add_argument("--sensors", type=generate_sensors.parse_sensor_list,
                        help="pendulums: sensors in model order, comma separated, from "
                             f"{','.join(generate_sensors.SENSOR_NAMES)} (default image; "
                             "parameters in the config's sections image_side, imu, encoder)")
    parser.add_argument("--excitation", choices=EXCITATIONS,
                        help="pneumatic: command generator (default from the config: mixed)")
    parser.add_argument("--memory-budget-mb", type=_int_at_least(1),
                        default=generate.DEFAULT_MEMORY_BUDGET >> 20,
                        help="refuse a data set whose arrays would take more (default "
                             "%(default)s MiB)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing data set in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _pendulum_config(args: argparse.Namespace) -> generate.PendulumConfig:
    config = (generate.load_pendulum_config(args.config, args.kind) if args.config
              else generate.default_pendulum_config(args.kind))
    physics, render_params = config.physics, config.render
    if args.links is not None and args.links != physics.links:
        if args.kind == "quad_link":
            raise ValueError(f"--links: quad_link has 4 links, received {args.links} "
                             "(use 'pendulum --links N' for other chains)")
        # several rods need the RK4 integrator to keep the cost down (see pendulum.py)
        physics = dataclasses.replace(physics, links=args.links, masses=(1.0,) * args.links,
                                      lengths=(1.0,) * args.links,
                                      integrator="rk4" if args.links > 1 else "symplectic_euler",
                                      sub_step=2e-3 if args.links > 1 else 1e-4)
        render_params = dataclasses.replace(render_params, grey_levels=())
    if args.image_size is not None:
        render_params = dataclasses.replace(render_params, image_size=args.image_size)
    sensors = config.sensors
    if args.sensors is not None:
        sensors = dataclasses.replace(sensors, sensors=args.sensors)
    return generate.PendulumConfig(
        physics=physics, render=render_params, noise=args.noise or config.noise,
        drop_prob=config.drop_prob if args.drop_prob is None else args.drop_prob,
        sensors=sensors)


def run(args: argparse.Namespace) -> int:
    """Generate and write the data set. A refused option or config file is one line on stderr
    and exit code 1; an --out that cannot take the data set, exit code 2."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} exists and is not a folder")
    if (out / DATA_FILE).exists() and not args.overwrite:
        return _fail(f"--out {out} already holds a data set ({DATA_FILE}); pass --overwrite "
                     "to replace it")
    try:
        if args.kind in generate.PENDULUM_KINDS:
            config = _pendulum_config(args)
            dataset = generate.generate_pendulum(args.kind, config, args.sequences, args.steps,
                                                 args.seed, progress=not args.no_progress,
                                                 memory_budget=args.memory_budget_mb << 20)
        else:
            for flag, value in (("--noise", args.noise), ("--image-size", args.image_size),
                                ("--links", args.links), ("--sensors", args.sensors)):
                if value:
                    raise ValueError(f"{flag} applies to the pendulums, not to 'pneumatic'")
            params = (generate.load_pneumatic_params(args.config) if args.config
                      else PneumaticParams())
            if args.excitation is not None:
                params = dataclasses.replace(
                    params, excitation=dataclasses.replace(params.excitation,
                                                           kind=args.excitation))
            dataset = generate.generate_pneumatic(params, args.sequences, args.steps, args.seed,
                                                  drop_prob=args.drop_prob or 0.0,
                                                  progress=not args.no_progress,
                                                  memory_budget=args.memory_budget_mb << 20)
    except ValueError as err:  # a refused option or config file
        return _fail(str(err), code=1)
    try:
        dataset.save(out)
    except OSError as err:
        return _fail(f"--out {out}: cannot write the data set ({err})")
    print(f"wrote {args.kind} data set: {dataset.num_sequences} sequences x "
          f"{dataset.sequence_length} steps -> {out / DATA_FILE}, {out / METADATA_FILE}")
    for sensor, spec in dataset.metadata["inputs"].items():
        valid = dataset.arrays[spec["valid"]]
        if not valid.all():
            why = generate_sensors.MISSING_REASONS.get(sensor, "dropped on purpose (--drop-prob)")
            print(f"{sensor}: {int((~valid).sum())} of {valid.size} samples {why}, zeroed and "
                  f"flagged in '{spec['valid']}'")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"rkn-ros generate: error: {message}", file=sys.stderr)
    return code
