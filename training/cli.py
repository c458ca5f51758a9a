"""`python -m training` / `cassava-edge-train`: train the cassava classifier."""

from __future__ import annotations

import sys

import click

from .config import SOURCE_BALANCE_MIXES, TRAIN_CROPS, TrainConfig

TRAIN_HINT = 'pip install "cassava-edge[train]"'
# The packages of the [train] extra that training imports: a runtime-only install lacks them.
TRAIN_MODULES = {"keras", "tensorflow", "torch", "matplotlib"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON file with any TrainConfig fields; command-line options override it.")
@click.option("--data", multiple=True, type=click.Path(), help="Kaggle-layout folder (repeatable).")
@click.option("--restore-aspect", multiple=True, metavar="FOLDER=W:H",
              help="Give a data folder's photos back their true aspect, e.g. cassava-roboflow=4:3 (repeatable).")
@click.option("--output", "-o", help="Run folder.")
@click.option("--backbone", help="efficientnet-lite0|1|2 or efficientnetb0..b7.")
@click.option("--weights", help="imagenet, none, or a local weights file.")
@click.option("--crop-size", type=int)
@click.option("--photo-short-side", type=int, help="Shorter side photos are scaled to before cropping.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--learning-rate", type=float)
@click.option("--label-smoothing", type=float)
@click.option("--freeze-blocks", type=int, help="Keep the stem and the first N backbone blocks frozen.")
@click.option("--freeze-batchnorm/--no-freeze-batchnorm", default=None,
              help="Run every BatchNormalization layer in inference mode, with its pretrained statistics "
                   "[default: off].")
@click.option("--ema-momentum", type=float, help="Validate and checkpoint an EMA of the weights (e.g. 0.99).")
@click.option("--class-weights", type=click.Choice(["none", "balanced", "sqrt"]))
@click.option("--class-weight-folder", metavar="FOLDER",
              help="Count classes for --class-weights in this data folder only (e.g. cassava) [default: all].")
@click.option("--source-balance", metavar="FOLDER",
              help="Weight each photo so that its class says nothing about whether it comes from this data folder, "
                   "e.g. cassava-roboflow [default: off].")
@click.option("--source-balance-mix", type=click.Choice(SOURCE_BALANCE_MIXES),
              help="With --source-balance: weight both groups to the class mix of all photos (all), or only the "
                   "folder's photos to the mix of the others (rest) [default: all].")
@click.option("--sampling", type=click.Choice(["uniform", "balanced", "sqrt"]),
              help="Class-balanced sampling: draw each epoch's photos with these class shares [default: uniform].")
@click.option("--mix", type=click.Choice(["none", "cutmix", "mixup", "both"]),
              help="CutMix and/or MixUp batches (both: one of the two per batch).")
@click.option("--mix-alpha", type=float, help="Beta(alpha, alpha) of the mixing ratio [default: 1.0].")
@click.option("--mix-probability", type=float, help="Share of batches mixed [default: 0.5].")
@click.option("--one-look/--no-one-look", default=None,
              help="Give every photo the same odds of each look (Roboflow chain, JPEG, resolution, blur, black "
                   "corners), so that the photo's source is no cue [default: off].")
@click.option("--one-look-share", type=float,
              help="With --one-look: share of training photos given a look each epoch, the others left as they "
                   "are [default: 1.0].")
@click.option("--canonical-look/--no-canonical-look", default=None,
              help="Put every photo, training and validation, through the Roboflow chain last, as the runtime does "
                   "for a model exported with --look roboflow [default: off].")
@click.option("--train-crop", type=click.Choice(TRAIN_CROPS),
              help="random: a crop at training scale; resized: a random part of the whole photo squeezed into the "
                   "crop, as the default full plan squeezes the whole photo [default: random].")
@click.option("--look-consistency", type=float, metavar="WEIGHT",
              help="Pair each training photo with its Roboflow-chained twin and add WEIGHT x the Jensen-Shannon "
                   "divergence of their answers to the loss (AugMix uses 12); epochs cost twice [default: 0, off].")
@click.option("--teacher", "teachers", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Distil from this checkpoint, or a CSV of recorded probabilities (python -m training.distill); "
                   "repeatable: the teachers' mean [default: none].")
@click.option("--distill-weight", type=float, help="Share of the teachers in the targets [default: 0.5].")
@click.option("--checkpoint-plan", type=click.Choice(["corners", "grid", "center", "full"]),
              help="Scan plan whose validation macro recall picks best.keras [default: the runtime's, full].")
@click.option("--validation-plans", help="Comma-separated plans scored each epoch besides --checkpoint-plan "
              "[default: grid,full]; 'full' alone scores only the default plan (cheaper).")
@click.option("--validation-fraction", type=float)
@click.option("--validation-list", type=click.Path(exists=True, dir_okay=False), help="Ids to validate on.")
@click.option("--validation-folder", help="Data folder the validation split is taken from (default: the first).")
@click.option("--folds", type=click.Path(exists=True, dir_okay=False),
              help="Fold file (folder,image_id,label,fold) [default: training/folds.csv, 5 folds of the originals].")
@click.option("--fold", type=int, help="Hold out this fold of --folds for validation (cross-validation).")
@click.option("--exclude-fold", "exclude_folds", multiple=True, type=int,
              help="Train and validate on no photo of this fold (repeatable): keeps it unseen by a whole procedure.")
@click.option("--seed", type=int)
@click.option("--max-images", type=int, help="At most this many photos per folder (smoke tests).")
@click.option("--skip-bad", is_flag=True, default=None, help="Leave out bad rows instead of stopping.")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="Checkpoint to continue from.")
@click.option("--initial-epoch", type=int)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False),
              help="Start from this checkpoint's weights (any crop size) with a new schedule.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, data: tuple[str, ...], restore_aspect: tuple[str, ...],
         teachers: tuple[str, ...], **options) -> None:
    """Train on Kaggle-layout folders (train.csv + train_images/) and write a run folder.

    Every default is the shipped model's recipe (models/README.md); only --data must be given, e.g.
    --data ../shared/data/cassava --data ../shared/data/cassava-roboflow. A training run takes hours on a CPU.
    """
    if not data and not config_file:
        # Without data there is nothing to train on: show what can be set instead of starting a long run.
        click.echo(ctx.get_help())
        ctx.exit(2)
    if data:
        options["data"] = list(data)
    if teachers:
        options["teachers"] = list(teachers)
    if options.get("validation_plans") is not None:
        options["validation_plans"] = [p for p in options["validation_plans"].split(",") if p]
    options["exclude_folds"] = list(options.get("exclude_folds") or ()) or None
    if restore_aspect:
        pairs = [item.partition("=") for item in restore_aspect]
        if any(not name or not ratio for name, _, ratio in pairs):
            raise click.UsageError("--restore-aspect takes FOLDER=W:H, e.g. cassava-roboflow=4:3")
        options["restore_aspect"] = {name: ratio for name, _, ratio in pairs}
    overrides = {k: v for k, v in options.items() if v is not None}
    try:
        config = TrainConfig.from_file(config_file, **overrides) if config_file else TrainConfig(**overrides)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None

    try:
        from .data import DataError
        from .train import train

        train(config)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in TRAIN_MODULES:
            click.echo(f"error: training needs {exc.name.split('.')[0]}, which is not installed: {TRAIN_HINT}", err=True)
            sys.exit(2)
        raise
    except (ValueError, FileNotFoundError) as exc:  # DataError is a ValueError
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
