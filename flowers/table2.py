"""The textbook's Table 2: per-class recognition rates of the five flowers, one row per method.

Table 2 (chapter 12.5.1 (4)) lists every class for all three of its rows: SVM,
CNN and deep transfer. It has no average column; the average here is the mean
of the five per-class rates, as for this project's rows: 51.09 (SVM), 81.86
(CNN) and 93.73 (deep transfer, the figure the text states). The text's
validation images were drawn after the photos were tripled, so its rates are
measured with views of them in the training set (docs/textbook-errata.md, E11).
"""
from __future__ import annotations

from pathlib import Path

FLOWER_CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

#: Table 2's per-class rates (%), in FLOWER_CLASSES' order (雏菊 蒲公英 玫瑰花 向日葵 郁金香).
TEXTBOOK_RATES = {
    "textbook: SVM (handcrafted features)": (50.61, 47.58, 45.69, 54.29, 57.27),
    "textbook: CNN from scratch": (82.52, 81.25, 84.19, 80.11, 81.24),
    "textbook: deep transfer (Inception-v3)": (94.25, 95.14, 92.21, 93.17, 93.89),
}

TEXTBOOK_ROWS = [
    (method, dict(zip(FLOWER_CLASSES, rates, strict=True)), round(sum(rates) / len(rates), 2))
    for method, rates in TEXTBOOK_RATES.items()
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
