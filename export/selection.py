"""Which variants are kept: the accuracy budget against fp32, and the choice among the int8 configurations."""

from __future__ import annotations

from .measure import Figures

MAX_ACCURACY_LOSS_POINTS = 1.0
LATENCY_TIE = 0.05  # relative
AGREEMENT_WINDOW = 0.03  # top-1 agreement with fp32, as a share of crops
LOW_AGREEMENT = 0.95  # below this the chosen int8 file gets a warning line


def too_lossy(figures: Figures) -> bool:
    # The tiny epsilon keeps exactly one point (e.g. 1 photo in 100) from failing on float rounding.
    return figures.accuracy_loss_points is not None and figures.accuracy_loss_points > MAX_ACCURACY_LOSS_POINTS + 1e-9


def refusal(precision: str, figures: Figures) -> str:
    return (f"{precision} refused: it loses {figures.accuracy_loss_points:.2f} accuracy points against fp32 "
            f"(at most {MAX_ACCURACY_LOSS_POINTS:g} allowed; --force keeps it)")


def choose_int8(candidates: list[Figures], force: bool) -> tuple[Figures | None, str]:
    """The fastest candidate within the accuracy budget; with `force` and none within it, the most accurate."""
    good = [c for c in candidates if not too_lossy(c)]
    if good:
        # A few hundred photos, most of them CMD, can hide a broken quantisation behind an unchanged accuracy
        # (per-tensor Lite0 at 384: same accuracy, but only 71% of crops agree with fp32). So configurations
        # agreeing with fp32 clearly less often than the best one are not considered.
        best_agreement = max(c.top1_agreement_vs_fp32 for c in good)
        close = [c for c in good if c.top1_agreement_vs_fp32 >= best_agreement - AGREEMENT_WINDOW]
        # Latency on a shared CPU varies by several percent between identical runs: candidates within
        # LATENCY_TIE of the fastest count as equally fast, and the one closest to fp32 wins among them.
        fastest = min(c.latency_ms_per_batch for c in close)
        tied = [c for c in close if c.latency_ms_per_batch <= fastest * (1 + LATENCY_TIE)]
        chosen = max(tied, key=lambda c: (c.top1_agreement_vs_fp32, -c.max_softmax_diff_vs_fp32))
        return chosen, (f"the fastest within the accuracy budget and within {AGREEMENT_WINDOW:.0%} of the best "
                        f"top-1 agreement; latencies within {LATENCY_TIE:.0%} count as ties")
    best = min(candidates, key=lambda c: (c.accuracy_loss_points, c.latency_ms_per_batch))
    if force:
        return best, f"forced: it loses {best.accuracy_loss_points:.2f} accuracy points"
    return None, refusal(f"int8 (best configuration {best.config})", best)
