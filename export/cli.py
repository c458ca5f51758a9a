"""`python -m export` / `cassava-edge-export`: a Keras checkpoint to self-describing, parity-checked ONNX files.

Exit codes: 0 done; 1 a check failed (parity: nothing written; a refused variant: the others written);
2 bad input or a missing extra (one line on stderr, no traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cassava_edge.contract import DEFAULT_SCAN, DEFAULT_TTA
from cassava_edge.extras import ONNXRUNTIME_HINT
from cassava_edge.looks import LOOK_KINDS
from .errors import ExportError, InputError

# The [export] extra's modules, imported only once an export starts, so that --help works without them;
# onnxruntime (parity and accuracy checks) comes with the runtime's own extra.
INSTALL_HINTS = {
    **dict.fromkeys(("keras", "tensorflow", "tf2onnx", "onnx"), 'pip install "cassava-edge[export]"'),
    "onnxruntime": ONNXRUNTIME_HINT,
}


def _variants(value: str) -> tuple[str, ...]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    return tuple(v for v in names if v != "fp32")  # fp32 is always written


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Folder for NAME.onnx and its variants, or the fp32 file itself (NAME.onnx).")
@click.option("--name", help="Model name, e.g. cassava-lite0 (default: from the backbone).")
@click.option("--variants", default="",
              help="Comma-separated: fp16 (for GPUs), int8 (for CPUs). fp32 is always written.")
@click.option("--calibration", multiple=True, type=click.Path(path_type=Path),
              help="int8: folder of training photos, or a Kaggle-layout folder (repeatable; default: the run's data).")
@click.option("--calibration-count", default=64, show_default=True,
              help="int8: photos to calibrate on (all their grid crops).")
@click.option("--validation", type=click.Path(path_type=Path), multiple=True,
              help="Kaggle-layout folder (train.csv + train_images/) to measure accuracy on (repeatable: the ids of "
                   "--validation-list may lie in any one of them; default: the run's).")
@click.option("--validation-list", type=click.Path(path_type=Path),
              help="Ids to validate on (default: the run's validation_ids.txt); they are left out of calibration.")
@click.option("--default-tta", default=DEFAULT_TTA, show_default=True, help="The model's TTA preset (metadata).")
@click.option("--default-scan", default=DEFAULT_SCAN, show_default=True, help="The model's scan plan (metadata).")
@click.option("--photo-short-side", type=int, help="Photo scale in training; needed only without a config.json.")
@click.option("--int8-configs", default="",
              help="Comma-separated int8 configurations to try (default: the portable QDQ reduce-range ones).")
@click.option("--seed", default=0, show_default=True, help="Seed of the calibration photo draw.")
@click.option("--force", is_flag=True, help="Keep a variant that loses more than 1 accuracy point.")
@click.option("--join", multiple=True, type=click.Path(path_type=Path),
              help="Another run folder, .keras file or exported .onnx model of the same crop and photo scale "
                   "(repeatable): the file answers the mean of all their probabilities.")
@click.option("--member", type=click.IntRange(min=0),
              help="SOURCE is a joined .onnx file (--join wrote it): export its member N alone, weights unchanged.")
@click.option("--look", type=click.Choice(("none", *LOOK_KINDS)), default="none", show_default=True,
              help="The look every photo is given before the model, in the runtime and in every figure measured here "
                   "(roboflow: squeezed to 640x640, JPEG q75, aspect restored; metadata schema 4).")
def main(source: Path, output: Path, name: str | None, variants: str, calibration: tuple[Path, ...],
         calibration_count: int, validation: tuple[Path, ...], validation_list: Path | None, default_tta: str,
         default_scan: str, photo_short_side: int | None, int8_configs: str, seed: int, force: bool,
         join: tuple[Path, ...], member: int | None, look: str) -> None:
    """Export SOURCE (a training run folder or a .keras file) to ONNX: NAME.onnx (fp32), NAME.fp16.onnx,
    NAME.int8.onnx and NAME.variants.json (sizes, parity, accuracy, latency). With --join, SOURCE and the joined
    checkpoints (or exported .onnx models) become one graph answering the mean of their probabilities. With --member, SOURCE is such a joined
    .onnx file and one of its members is exported alone."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter would bury the report
    try:
        from .pipeline import export_model
        from .plan import ExportRequest

        request = ExportRequest(
            source=source, output=output, name=name, variants=_variants(variants), calibration=calibration,
            calibration_count=calibration_count, validation=validation, validation_list=validation_list,
            default_tta=default_tta, default_scan=default_scan, photo_short_side=photo_short_side,
            int8_configs=tuple(c.strip() for c in int8_configs.split(",") if c.strip()), force=force, seed=seed,
            join=join, member=member, look=look,
        )
        export_model(request, echo=click.echo)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ExportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in INSTALL_HINTS:
            raise  # not a module of an extra but a broken install, whose traceback is the useful report
        click.echo(f"error: the export needs {module}, which is not installed: {INSTALL_HINTS[module]}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
