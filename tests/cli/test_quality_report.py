"""The command line's "Check first" lines for a model of many classes: short, with every flag in quality.csv."""

from __future__ import annotations

import io

from napari_action.cli.quality_report import print_worst
from napari_action.inference.quality import quality_table, rate
from tests.helpers.engine import atlas_record


def test_a_scan_missing_dozens_of_classes_is_one_short_line_and_quality_csv_keeps_every_flag():
    names = {value: f"Region_{value}" for value in range(1, 41)}
    quality = rate("atlas.nii.gz", atlas_record(), names)
    assert len(quality.flags) == 38  # 37 regions missing, and the volume uncertain

    out = io.StringIO()
    print_worst([quality], "every file in out/quality.csv", out=out)
    line = out.getvalue().splitlines()[1]
    assert line == (
        "  0.015  atlas.nii.gz: Region_4 missing; Region_5 missing; Region_6 missing; and 34 more classes flagged; "
        "uncertain (certainty 0.20); worst slice 0 along axis 2"
    )
    assert quality_table([quality], list(names.values())).count(" missing") == 37


def test_a_few_flags_are_all_spelled_out():
    quality = rate("atlas.nii.gz", atlas_record(classes=5), {})
    assert quality.brief_flags() == "class 4 missing; class 5 missing; uncertain (certainty 0.20)"
