"""Charts draw the plant's Chinese area and workshop names with a CJK font when one is installed
(`.ci/run` installs Debian's fonts-wqy-microhei), rather than as empty boxes."""

import shutil
import subprocess
import warnings

import pytest

from hub.analytics import charts

AREA = "裂解车间"
PNG = b"\x89PNG\r\n\x1a\n"


def _installed_cjk_fonts() -> str:
    if not shutil.which("fc-list"):
        return ""
    return subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.mark.skipif(not _installed_cjk_fonts(), reason="fc-list shows no CJK font (Debian: apt-get install fonts-wqy-microhei)")
def test_a_chart_with_a_chinese_area_name_has_every_glyph():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = [
            charts.bar_chart([AREA, "罐区"], [3, 5], title=f"{AREA}: 动火作业"),
            charts.line_chart(["2026-11", "2026-12"], {f"NJ01 {AREA}": [0.5, 1.0]}, title="高处作业与不良率"),
        ]
    assert all(png.startswith(PNG) for png in drawn)
    missing = [str(w.message) for w in caught if "Glyph" in str(w.message) and "missing" in str(w.message)]
    assert missing == []
    # A font the system has, not one matplotlib happened to know: the charts name it.
    assert set(charts.matplotlib.rcParams["font.family"]) & set(charts.CJK_FAMILIES)
