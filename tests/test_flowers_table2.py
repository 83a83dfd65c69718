"""Table 2's textbook rows: every class of all three rows, and averages that are the means of those classes."""
import pytest

from flowers.table2 import FLOWER_CLASSES, TEXTBOOK_ROWS, row_from_metrics, table2_markdown

# The textbook's Table 2 (chapter 12.5.1 (4)), typed from the text: daisy, dandelion, roses, sunflowers, tulips.
TABLE2 = {
    "SVM": ["50.61", "47.58", "45.69", "54.29", "57.27"],
    "CNN": ["82.52", "81.25", "84.19", "80.11", "81.24"],
    "deep transfer": ["94.25", "95.14", "92.21", "93.17", "93.89"],
}


def test_every_textbook_row_has_all_five_classes_in_the_markdown():
    lines = table2_markdown([]).splitlines()
    assert lines[0] == "| method | " + " | ".join(FLOWER_CLASSES) + " | average |"
    for key, cells in TABLE2.items():
        (line,) = [line for line in lines if line.startswith(f"| textbook: {key}")]
        assert [cell.strip() for cell in line.strip("|").split("|")][1:6] == cells, key


def test_textbook_averages_are_the_means_of_the_rows():
    # 51.09, 81.86 and 93.73 (the last the figure the text states).
    assert [average for _, _, average in TEXTBOOK_ROWS] == [51.09, 81.86, 93.73]
    for _, per_class, average in TEXTBOOK_ROWS:
        assert list(per_class) == FLOWER_CLASSES
        assert sum(per_class.values()) / 5 == pytest.approx(average, abs=0.005)


def test_project_rows_follow_the_textbook_rows_and_other_classes_drop_them():
    rates = dict(zip(FLOWER_CLASSES, [0.5, 0.6, 0.7, 0.8, 0.9], strict=True))
    lines = table2_markdown([row_from_metrics("this project: x", {"per_class_accuracy": rates})]).splitlines()
    assert len(lines) == 2 + 3 + 1
    assert lines[-1] == "| this project: x | 50.00 | 60.00 | 70.00 | 80.00 | 90.00 | 70.00 |"
    # Three classes (a test folder): the textbook's five-class rows do not apply.
    three = table2_markdown([("m", {"a": 50.0, "b": 60.0, "c": 70.0}, 60.0)], class_names=["a", "b", "c"])
    assert "textbook" not in three and three.splitlines()[-1] == "| m | 50.00 | 60.00 | 70.00 | 60.00 |"
