"""The textbook's Table 2: per-class recognition rates of the five flowers, one row per method.

The textbook gives per-class rates for its deep-transfer row only; for the SVM
and the from-scratch CNN it gives the averages (51.09 and 81.86), so their
per-class cells are left blank rather than invented.
"""
from __future__ import annotations

from pathlib import Path

FLOWER_CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

TEXTBOOK_ROWS = [
    ("textbook: SVM (handcrafted features)", None, 51.09),
    ("textbook: CNN from scratch", None, 81.86),
    (
        "textbook: deep transfer (Inception-v3)",
        {"daisy": 94.25, "dandelion": 95.14, "roses": 92.21, "sunflowers": 93.17, "tulips": 93.89},
        93.73,
    ),
]


def row_from_metrics(method: str, metrics: dict) -> tuple[str, dict, float]:
    """A table row (percentages) from a run's metrics: per-class rates and their mean."""
    per_class = {name: 100.0 * value for name, value in metrics["per_class_accuracy"].items() if value is not None}
    average = sum(per_class.values()) / len(per_class) if per_class else float("nan")
    return method, per_class, average


def table2_markdown(rows, class_names: list[str] | None = None, textbook: bool = True) -> str:
    """Markdown in the textbook's layout: method, one column per class, average (all in %)."""
    class_names = class_names or FLOWER_CLASSES
    all_rows = list(TEXTBOOK_ROWS) + list(rows) if textbook and class_names == FLOWER_CLASSES else list(rows)
    lines = [
        "| method | " + " | ".join(class_names) + " | average |",
        "| --- | " + " | ".join("---:" for _ in class_names) + " | ---: |",
    ]
    for method, per_class, average in all_rows:
        cells = [f"{per_class[name]:.2f}" if per_class and name in per_class else "" for name in class_names]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {average:.2f} |")
    return "\n".join(lines) + "\n"


def write_table2(run_dir, rows, class_names: list[str] | None = None) -> Path:
    path = Path(run_dir) / "table2.md"
    path.write_text(
        "Per-class recognition rate on the validation images (%); the average is the mean of the "
        "per-class rates.\n\n" + table2_markdown(rows, class_names)
    )
    return path
