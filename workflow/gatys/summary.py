"""The pandas summary of many runs (one row each) and a plot of their loss curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .imaging import atomic_path

LABELS = ("content", "style", "preset")


def provenance_path(losses_csv: str | Path) -> Path:
    """results/runs/p/c/s.losses.csv -> results/runs/p/c/s.json"""
    path = Path(losses_csv)
    return path.with_name(path.name.removesuffix(".losses.csv") + ".json")


@dataclass
class Run:
    """One run's files, read once: its loss CSV path, its rows and its provenance record."""

    csv: str
    losses: pd.DataFrame
    record: dict

    @property
    def labels(self) -> dict:
        return self.record.get("labels", {})


def load_runs(losses_csvs: list[str | Path]) -> list[Run]:
    runs = []
    for csv in losses_csvs:
        losses = pd.read_csv(csv)
        if losses.empty:
            raise ValueError(f"{csv}: no loss rows; delete it and rerun")
        runs.append(Run(str(csv), losses, json.loads(provenance_path(csv).read_text())))
    return runs


def summarize(runs: list[Run]) -> pd.DataFrame:
    """One row per run: content, style, preset; the final evaluation's unweighted losses
    (``loss_<term>``), weighted terms (``weighted_<term>``) and ``total``; evaluations, seconds,
    device, size and the loss CSV it came from."""
    records = []
    for run in runs:
        losses, settings = run.losses, run.record["settings"]
        final = losses.iloc[-1]
        row = {key: run.labels.get(key, "") for key in LABELS}
        for column in losses.columns:  # unweighted terms, as in the loss CSV
            if column not in ("step", "scale", "size", "elapsed_s", "total"):
                row[f"loss_{column}"] = float(final[column])
        for term in ("content", "style", "tv"):
            row[f"weighted_{term}"] = settings[f"{term}_weight"] * row[f"loss_{term}"]
        row["total"] = float(final["total"])
        row["evaluations"] = len(losses)
        row["seconds"] = round(float(run.record["result"]["elapsed_s"]), 3)
        row["device"] = run.record["result"]["device"]
        row["size"] = int(final["size"])
        row["losses_csv"] = run.csv
        records.append(row)
    frame = pd.DataFrame(records)
    return frame.sort_values(list(LABELS), kind="stable").reset_index(drop=True) if records else frame


def write_summary(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def plot_loss_curves(runs: list[Run], path: str | Path) -> None:
    """Total loss against evaluation, one line per run, one panel per preset (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = sorted({run.labels.get("preset", "") for run in runs}) or [""]
    fig, axes = plt.subplots(1, len(presets), figsize=(5 * len(presets), 4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        for run in runs:
            if run.labels.get("preset", "") == preset:
                label = f"{run.labels.get('content', '')} × {run.labels.get('style', '')}"
                ax.plot(run.losses["step"], run.losses["total"], label=label)
        ax.set_yscale("log")
        ax.set_xlabel("loss evaluation")
        ax.set_ylabel("total loss")
        ax.set_title(preset or "runs")
        if len(ax.lines) <= 12:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
