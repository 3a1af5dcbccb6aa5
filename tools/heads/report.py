"""How well a trained head does on held-out recordings: clip and window accuracy, per-class precision / recall /
F1, confusion matrices, and the per-class start thresholds that reach a target precision.

A clip's class is the top class of its pooled window scores (mean or max, as `edge-audio classify` pools);
a window's class is its own top class. Every figure is computed on files the head never trained on.
"""

from __future__ import annotations

import math

import numpy as np

from edge.core.clip import CLIP_POOLS, pool_scores

THRESHOLD_FLOOR = 0.25  # a start threshold below this would fire on scores that are not an answer


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """[n, n] counts: row = true class, column = predicted class."""
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (np.asarray(truth, np.intp), np.asarray(predicted, np.intp)), 1)
    return matrix


def per_class(matrix: np.ndarray, classes: list[str]) -> list[dict]:
    out = []
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"class": name, "precision": round(precision, 4), "recall": round(recall, 4),
                    "f1": round(f1, 4), "support": actual})
    return out


def evaluate(window_scores: list[np.ndarray], labels: list[int], classes: list[str]) -> dict:
    """window_scores: one [windows, classes] array per held-out file; labels: each file's class index."""
    n = len(classes)
    windows = np.concatenate(window_scores)
    window_truth = np.concatenate([np.full(len(w), c) for w, c in zip(window_scores, labels)])
    window_matrix = confusion(window_truth, windows.argmax(axis=1), n)
    result = {"files": len(labels), "windows": int(len(windows)),
              "window_accuracy": round(float(np.trace(window_matrix) / max(1, window_matrix.sum())), 4),
              "window_confusion": window_matrix.tolist(),
              "window_per_class": per_class(window_matrix, classes), "clip": {}}
    for pool in CLIP_POOLS:
        predicted = [int(np.argmax(pool_scores(w, pool))) for w in window_scores]
        matrix = confusion(np.asarray(labels), np.asarray(predicted), n)
        result["clip"][pool] = {"accuracy": round(float(np.trace(matrix) / max(1, matrix.sum())), 4),
                                "confusion": matrix.tolist(), "per_class": per_class(matrix, classes),
                                "predicted": predicted}
    return result


def choose_thresholds(window_scores: list[np.ndarray], labels: list[int], classes: list[str],
                      target_precision: float, skip: tuple[str, ...] = ()) -> dict:
    """Per class, the lowest start threshold (three decimals, never below THRESHOLD_FLOOR) at which the held-out
    windows scoring at or above it are at least `target_precision` that class. A class that cannot reach the
    target gets the threshold just above its best-scoring other-class window, and says so. The precision and
    recall reported are those of the threshold as written, so target_met is true exactly when that precision
    reaches the target."""
    scores = np.concatenate(window_scores).astype(np.float64)
    truth = np.concatenate([np.full(len(w), c) for w, c in zip(window_scores, labels)])
    grid = np.arange(round(THRESHOLD_FLOOR * 1000), 1001) / 1000  # every threshold a manifest can hold
    out = {}
    for c, name in enumerate(classes):
        if name in skip:
            continue
        s, positive = scores[:, c], truth == c
        above, hits = _counts_at(s, positive, grid)
        ok = np.nonzero((above > 0) & (hits / np.maximum(above, 1) >= target_precision))[0]
        if ok.size:
            threshold = float(grid[ok[0]])
        else:
            negatives = s[~positive]
            threshold = float(negatives.max()) + 1e-3 if negatives.size else 0.5
            threshold = min(1.0, max(THRESHOLD_FLOOR, math.ceil(threshold * 1000) / 1000))
        chosen = s >= threshold
        precision = float(positive[chosen].mean()) if chosen.any() else 0.0
        out[name] = {"threshold": threshold, "target_met": precision >= target_precision,
                     "precision": shown_precision(precision, target_precision),
                     "recall": round(float(chosen[positive].mean()) if positive.any() else 0.0, 4)}
    return out


def _counts_at(s: np.ndarray, positive: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: how many windows score at or above it, and how many of those are the class."""
    order = np.argsort(s, kind="stable")
    ranked, from_top = s[order], np.r_[np.cumsum(positive[order][::-1])[::-1], 0]
    first = np.searchsorted(ranked, thresholds, side="left")
    return len(s) - first, from_top[first]


def shown_precision(precision: float, target: float, digits: int = 4) -> float:
    """`precision` rounded to `digits` decimals, or to more where fewer would put it on the other side of the
    target (0.89996 is not shown as 0.9 when the target is 0.9)."""
    while round(precision, digits) >= target > precision and digits < 12:
        digits += 1
    return round(precision, digits)


def _table(rows: list[dict]) -> list[str]:
    lines = [f"    {'class':<24} {'precision':>9} {'recall':>7} {'F1':>6} {'clips':>6}"]
    lines += [f"    {r['class'][:24]:<24} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} {r['support']:>6}"
              for r in rows]
    return lines


def _matrix(matrix: list[list[int]], classes: list[str]) -> list[str]:
    width = max(5, max(len(c) for c in classes[:12]) + 1)
    short = [c[:width - 1] for c in classes]
    lines = ["    " + " " * width + "".join(f"{c:>{width}}" for c in short) + "   <- predicted"]
    lines += ["    " + f"{short[i]:<{width}}" + "".join(f"{v:>{width}}" for v in row) for i, row in enumerate(matrix)]
    return lines


def _decimals(precision: float, target: float) -> str:
    """Three decimals, or as many more as it takes to keep a precision below the target from reading as it."""
    digits = 3
    while float(f"{precision:.{digits}f}") >= target > precision and digits < 12:
        digits += 1
    return f"{precision:.{digits}f}"


def threshold_lines(target: float, thresholds: dict) -> list[str]:
    """The start thresholds (choose_thresholds), each with the precision it reaches, and the classes that fall
    short of the target named as such."""
    lines = [f"start thresholds for precision >= {target:g} on held-out windows:"]
    for name, t in thresholds.items():
        precision = _decimals(t["precision"], target)
        note = "" if t["target_met"] else (f"  (precision {precision} < {target:g}: target not met for {name}; the "
                                           "threshold sits just above its best-scoring other-class window)")
        lines.append(f"    {name[:24]:<24} {t['threshold']:.3f}  precision {precision}  recall {t['recall']:.3f}{note}")
    missed = [name for name, t in thresholds.items() if not t["target_met"]]
    if missed:
        lines.append(f"target precision {target:g} not met for {len(missed)} of {len(thresholds)} classes: "
                     f"{', '.join(missed)}")
    return lines


def format_report(report: dict) -> str:
    classes = report["classes"]
    pool = report["pool"]
    f, q = report["float_head"], report["int8_export"]
    chosen = "measured best" if report.get("pool_chosen") == "measured" else "as given"
    lines = [f"held-out files: {f['files']} ({f['windows']} windows); clip score = {pool} of its windows "
             f"({chosen}; the bundle's default)",
             f"{'':<22} {'clip accuracy':>14} {'(max pooling)' if pool == 'mean' else '(mean pooling)':>15} "
             f"{'window accuracy':>16}"]
    other = "max" if pool == "mean" else "mean"
    for name, r in (("float head", f), ("int8 export", q)):
        lines.append(f"{name:<22} {r['clip'][pool]['accuracy']:>14.3f} {r['clip'][other]['accuracy']:>15.3f} "
                     f"{r['window_accuracy']:>16.3f}")
    lines.append(f"clip accuracy change from the float head to the int8 export: "
                 f"{q['clip'][pool]['accuracy'] - f['clip'][pool]['accuracy']:+.3f}")
    lines.append(f"int8 export, per class (clips, {pool} pooling):")
    lines += _table(q["clip"][pool]["per_class"])
    lines.append("int8 export, confusion matrix (clips; rows: true class):")
    lines += _matrix(q["clip"][pool]["confusion"], classes)
    lines += threshold_lines(report["target_precision"], report["thresholds"])
    if report.get("audioset_vs_base"):
        a = report["audioset_vs_base"]
        lines.append(f"AudioSet output vs the base model alone: top-1 agreement {a['top1_agreement']:.3f}, "
                     f"max abs score difference {a['max_abs_diff']:.4f}")
    return "\n".join(lines)
