"""The evaluation's outputs: the table printed, evaluation.json, and one PNG of the feature distributions."""

import json
import math
from pathlib import Path

import numpy as np

from lm_music.evaluation.compare import GRID_POINTS, kde_density
from lm_music.io import atomic_path, write_text_atomic

ANCHORS = ("model", "ceiling", "floor")


def _fmt(value: float, width: int = 9) -> str:
    return f"{'-':>{width}}" if value is None or not math.isfinite(value) else f"{value:>{width}.3f}"


def position(model: float, ceiling: float, floor: float) -> float:
    """Where the model's mean OA lies from the floor (0) to the ceiling (1)."""
    if not all(map(math.isfinite, (model, ceiling, floor))) or ceiling == floor:
        return float("nan")
    return (model - floor) / (ceiling - floor)


def summary_line(summary: dict) -> str:
    model, ceiling, floor = (summary["mean_oa"][a] for a in ANCHORS)
    where = position(model, ceiling, floor)
    line = (
        f"mean OA over features: model {_fmt(model, 0)}, ceiling {_fmt(ceiling, 0)}, floor {_fmt(floor, 0)}"
    )
    if math.isfinite(where):
        line += f": the model lies {where:.0%} of the way from the floor to the ceiling"
    return line


def table(result: dict) -> str:
    """The comparison, a feature a line: means, OA against the reference of the model and both anchors, KL."""
    head = f"{'feature':24}{'samples':>9}{'reference':>10}{'OA':>9}{'ceiling':>9}{'floor':>9}{'KL':>9}"
    rows = [head, "-" * len(head)]
    for name, c in result["comparisons"]["model"].items():
        ceiling = result["comparisons"].get("ceiling", {}).get(name, {}).get("oa")
        floor = result["comparisons"]["floor"][name]["oa"]
        rows.append(
            f"{name:24}{_fmt(c['mean_samples'])}{_fmt(c['mean_reference'], 10)}{_fmt(c['oa'])}"
            f"{_fmt(ceiling)}{_fmt(floor)}{_fmt(c['kl'])}"
        )
    return "\n".join([*rows, "", summary_line(result["summary"])])


def clean(value):
    """JSON-safe: NaN and infinities as null, numpy values as Python ones."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, result: dict) -> None:
    write_text_atomic(path, json.dumps(clean(result), indent=1) + "\n")


def _curve(values: np.ndarray, grid: np.ndarray) -> np.ndarray | None:
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        return None
    return kde_density(values, 1.0)(grid)


def write_png(path: Path, result: dict, title: str) -> None:
    """One panel per feature: the density of the samples' values against the reference's (and the floor's,
    faint), the means marked, the OA in the panel's title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    features = result["features"]
    names = list(features["samples"])
    matrices = {
        name: np.asarray(entry["mean"])
        for name, entry in (result.get("pitch_class_transitions") or {}).items()
        if name in ("samples", "reference")
    }
    cols = 4
    rows = math.ceil((len(names) + len(matrices)) / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * rows + 0.6), dpi=90)
    FigureCanvasAgg(fig)
    styles = {
        "samples": {"color": "tab:red", "lw": 2.0, "label": "samples"},
        "reference": {"color": "black", "lw": 2.0, "ls": "--", "label": "reference"},
        "floor": {"color": "tab:gray", "lw": 1.0, "ls": ":", "label": "floor"},
    }
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        sets = {s: np.asarray(features[s][name], dtype=float) for s in styles if s in features}
        finite = np.concatenate([v[np.isfinite(v)] for v in sets.values()])
        if not len(finite):
            ax.set_title(f"{name}: no values")
            continue
        lo, hi = finite.min(), finite.max()
        pad = (hi - lo) * 0.15 or 0.5
        grid = np.linspace(lo - pad, hi + pad, GRID_POINTS // 4)
        for set_name, values in sets.items():
            curve = _curve(values, grid)
            style = styles[set_name]
            if curve is not None:
                ax.plot(
                    grid,
                    curve,
                    color=style["color"],
                    lw=style["lw"],
                    ls=style.get("ls", "-"),
                    label=style["label"],
                )
            finite_values = values[np.isfinite(values)]
            if len(finite_values):
                ax.axvline(
                    finite_values.mean(), color=style["color"], lw=0.8, ls=style.get("ls", "-"), alpha=0.6
                )
        oa = result["comparisons"]["model"][name]["oa"]
        ceiling = result["comparisons"].get("ceiling", {}).get(name, {}).get("oa")
        ax.set_title(f"{name}  OA {_fmt(oa, 0).strip()} (ceiling {_fmt(ceiling, 0).strip()})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7)
    for i, (set_name, matrix) in enumerate(matrices.items()):
        ax = fig.add_subplot(rows, cols, len(names) + i + 1)
        ax.imshow(matrix, cmap="Greys", origin="lower", vmin=0)
        distance = result["pitch_class_transitions"][set_name]["l1_to_reference"]
        ax.set_title(f"pitch-class transitions, {set_name} (L1 to reference {distance:.2f})", fontsize=8)
        ax.set_xticks(range(12), ["C", "", "D", "", "E", "F", "", "G", "", "A", "", "B"], fontsize=6)
        ax.set_yticks(range(12), ["C", "", "D", "", "E", "F", "", "G", "", "A", "", "B"], fontsize=6)
        ax.set_xlabel("to", fontsize=7)
        ax.set_ylabel("from", fontsize=7)
    fig.suptitle(f"{title}\n{summary_line(result['summary'])}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def memorisation_lines(memorisation: dict) -> list[str]:
    """A line per set of the copying of notes from the training pieces (`kinds.note_memorisation`)."""
    window = memorisation["window"]
    return [
        f"{name}: longest run of notes found verbatim in a training piece {m['longest_copy_max']:.0f} "
        f"(mean {m['longest_copy_mean']:.1f}); {m['copied_windows']:.1%} of {window}-note windows copied"
        for name, m in memorisation["sets"].items()
    ]
