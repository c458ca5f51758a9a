"""The training recipe as one dataclass: every knob of the reference notebook, with its default."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cassava_edge.contract import DEFAULT_SCAN


# The Roboflow copies are 800x600 originals squeezed to 640x640 (../shared/data/README.md): a fact of that data
# folder, so the recipe restores it whenever a folder of that name is trained on.
RECIPE_RESTORE_ASPECT = {"cassava-roboflow": "4:3"}
TRAIN_CROPS = ("random", "resized")
SOURCE_BALANCE_MIXES = ("all", "rest")  # data.source_balance_weights


@dataclass
class TrainConfig:
    # The defaults are the shipped model's recipe (models/README.md): only the data folders must be given.
    data: list[str] = field(default_factory=list)
    # Data folder name -> the true width:height of its photos, for folders whose photos were resized to another
    # shape (e.g. {"cassava-roboflow": "4:3"}: 800x600 originals squeezed to 640x640). Recorded in dataset.json.
    # Folders named in RECIPE_RESTORE_ASPECT get their ratio without being named here.
    restore_aspect: dict[str, str] = field(default_factory=dict)
    output: str = "runs/latest"
    backbone: str = "efficientnet-lite0"
    # Weights: "imagenet" (Lite: from the registry packages; B0-B7 need a local file), a path to a .h5, or "none".
    weights: str = "imagenet"
    crop_size: int = 384
    photo_short_side: int = 450  # photos are brought to this shorter side before the random crop
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 2e-4
    cosine_alpha: float = 0.3
    dropout: float = 0.4
    drop_connect: float = 0.2
    label_smoothing: float = 0.1
    # Keep the stem and the first N backbone blocks frozen: they see the largest feature maps, so freezing them
    # saves much of the backward pass on a CPU, and their generic edge filters need little tuning.
    freeze_blocks: int = 3
    # Run every BatchNormalization layer in inference mode with its ImageNet statistics (the BN layers of the
    # Kaggle write-ups' EfficientNets): batches of 16 give noisy batch statistics, and the moving averages then
    # drift from what the weights were tuned with.
    freeze_batchnorm: bool = False
    ema_momentum: float = 0.99  # > 0: validate and checkpoint an exponential moving average of the weights
    class_weights: str = "sqrt"  # "none" | "balanced" | "sqrt" (square root of balanced: gentler)
    # Count the classes for class_weights in this data folder's training photos only (e.g. "cassava", the
    # originals users' photos look like). Counted over all folders, a folder with another class mix (the Roboflow
    # copies: no CBB, 4/5 of all Healthy) shrinks the weight of its classes for the originals too, and a model that
    # can tell the folders apart learns a distorted prior for original-looking photos (Healthy -> CBB).
    class_weight_folder: str | None = None
    # Weight each photo so that its class says nothing about whether it comes from this data folder (e.g.
    # "cassava-roboflow", which holds most CGM and Healthy photos and whose copies look re-encoded):
    # data.source_balance_weights. The look-jitter removes the look; this removes the reward for reading it.
    source_balance: str | None = None
    # The class mix source_balance weights both groups to: of all training photos ("all") or of the photos outside
    # the folder ("rest", the originals' mix: only the folder's photos are reweighted).
    source_balance_mix: str = "all"
    # How each epoch draws its photos: "uniform" (each once) or, with replacement, "balanced" / "sqrt" class shares.
    sampling: str = "uniform"
    # The scan plan whose validation macro recall picks best.keras: the plan the exported model classifies with by
    # default (cassava_edge.contract.DEFAULT_SCAN), so the checkpoint is chosen on what users get. The other
    # plans of validation.VALIDATION_PLANS are scored too, into history.csv.
    checkpoint_plan: str = DEFAULT_SCAN
    # The plans scored each epoch, the checkpoint plan first. None: checkpoint_plan and validation.VALIDATION_PLANS.
    # Only the checkpoint plan ("full") makes a cross-validation epoch about a sixth cheaper on a CPU.
    validation_plans: list[str] | None = None
    validation_fraction: float = 0.2
    validation_list: str | None = None  # a file of image ids (one per line, or a CSV with image_id) to validate on
    validation_folder: str | None = None  # which data folder the validation split is taken from (default: first)
    # Cross-validation: hold out fold `fold` of a fold file (folder,image_id,label,fold; default the committed
    # training/folds.csv over the originals) and train on every other photo of every data folder.
    folds: str | None = None
    fold: int | None = None
    # Folds of the fold file used for neither training nor validation (see folds.split_by_fold).
    exclude_folds: list[int] = field(default_factory=list)
    seed: int = 42
    # Augmentation, as in the reference: rotation in fractions of a full turn, Keras zoom factor range, contrast.
    rotation: float = 0.25
    zoom: tuple[float, float] = (-0.2, 0.0)
    contrast: float = 0.2
    # Batch mixing on top of the stack: "none", "cutmix", "mixup" or "both" (one of the two per batch), applied to
    # a batch with probability mix_probability, ratio drawn from Beta(mix_alpha, mix_alpha).
    mix: str = "none"
    mix_alpha: float = 1.0
    mix_probability: float = 0.5
    # Knowledge distillation: checkpoints (.keras, any input size) whose mean probabilities on each training photo
    # are blended into its targets with distill_weight (see distill.py). Empty: plain labels.
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 0.5
    # One look for every photo (looks.py): the Roboflow chain, JPEG/resolution/blur jitter and black corners at the
    # same odds whatever the photo's folder, so that the source is no cue for the class.
    one_look: bool = False
    one_look_share: float = 1.0  # share of training photos given a look each epoch; the others stay clean
    # The canonical look (cassava_edge.looks): every photo, training and validation, through the Roboflow chain last,
    # as a runtime model exported with `--look roboflow` sees it; the one-look draws, if any, come before it.
    canonical_look: bool = False
    # How a training photo becomes the crop: "random" cuts a crop at training scale; "resized" takes a random part
    # of the whole photo (data.RESIZED_PART_AREA of it, about its aspect) and squeezes it into the crop, as the
    # default `full` plan squeezes the whole photo at inference, so that training sees leaves at the scale and
    # squeeze they are classified at.
    train_crop: str = "random"
    # > 0: pair every training photo with its Roboflow-chained twin and add this weight times the Jensen-Shannon
    # divergence of their answers to the loss (consistency.py), so that the look cannot move the answer while the
    # photo keeps its detail. Each epoch then costs about twice as much.
    look_consistency: float = 0.0
    skip_bad: bool = False
    max_images: int | None = None  # per folder, for smoke tests
    resume: str | None = None  # a checkpoint (.keras) to continue from
    # A checkpoint whose weights start a new run, e.g. at a larger crop size (the weights do not depend on it):
    # train cheaply at 384, then fine-tune briefly at the 512 the photos are classified at.
    init_from: str | None = None
    initial_epoch: int = 0

    def __post_init__(self) -> None:
        from cassava_edge.scan import SCAN_PLANS

        if self.fold is not None and self.validation_list:
            raise ValueError("--fold and --validation-list both choose the validation photos: give one")
        if self.exclude_folds and self.fold is None:
            raise ValueError("--exclude-fold needs --fold N (the fold to hold out)")
        if self.folds and self.fold is None:
            raise ValueError("--folds needs --fold N (the fold to hold out)")
        for plan in self.validation_plans or ():
            if plan not in SCAN_PLANS:
                raise ValueError(f"validation plan must be one of {', '.join(SCAN_PLANS)}, not {plan!r}")
        if not 0.0 < self.one_look_share <= 1.0:
            raise ValueError(f"--one-look-share must be in (0, 1], not {self.one_look_share}")
        if self.one_look_share < 1.0 and not self.one_look:
            raise ValueError("--one-look-share needs --one-look")
        if self.train_crop not in TRAIN_CROPS:
            raise ValueError(f"--train-crop must be one of {', '.join(TRAIN_CROPS)}, not {self.train_crop!r}")
        if self.look_consistency < 0:
            raise ValueError(f"--look-consistency is a weight, 0 or more, not {self.look_consistency}")
        if self.look_consistency > 0 and self.mix != "none":
            raise ValueError("--look-consistency pairs each photo with its twin in the batch; --mix would mix them")
        if self.source_balance_mix not in SOURCE_BALANCE_MIXES:
            raise ValueError(f"--source-balance-mix must be one of {', '.join(SOURCE_BALANCE_MIXES)}, "
                             f"not {self.source_balance_mix!r}")
        if self.source_balance_mix != "all" and not self.source_balance:
            raise ValueError("--source-balance-mix needs --source-balance FOLDER")
        if self.checkpoint_plan not in SCAN_PLANS:
            raise ValueError(f"checkpoint_plan must be one of {', '.join(SCAN_PLANS)}, not {self.checkpoint_plan!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {', '.join(sorted(unknown))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        if "zoom" in data:
            data["zoom"] = tuple(data["zoom"])
        return cls(**data)
