"""The quality harness's report: the bootstrap interval of a median regret, and ``benchmarks/quality.py --render``
writing a report again from its JSON without training."""
import json
import math
import statistics

import pytest

from metahp_fast import cli
from metahp_fast.quality import bootstrap_interval


def _runs(values_by_task: dict[str, list[float]]) -> dict[str, list[dict]]:
    return {t: [{"regret": v} for v in vs] for t, vs in values_by_task.items()}


def test_bootstrap_interval_brackets_the_median_and_widens_with_spread():
    same = bootstrap_interval(_runs({"a": [0.2, 0.2], "b": [0.2, 0.2, 0.2]}))
    assert same == [pytest.approx(0.2), pytest.approx(0.2)]

    tight = _runs({f"t{i}": [0.1 + 0.01 * i, 0.11 + 0.01 * i, 0.12 + 0.01 * i] for i in range(6)})
    wide = _runs({f"t{i}": [0.1 * 3 ** i, 0.11 * 3 ** i, 0.12 * 3 ** i] for i in range(6)})
    for runs in (tight, wide):
        lo, hi = bootstrap_interval(runs)
        med = statistics.median(statistics.median(r["regret"] for r in rs) for rs in runs.values())
        assert lo <= med <= hi and lo < hi
    (tlo, thi), (wlo, whi) = bootstrap_interval(tight), bootstrap_interval(wide)
    assert whi - wlo > 10 * (thi - tlo)
    # reproducible for a seed; NaN runs (no spread in the reference) are left out, as the median leaves them out
    assert bootstrap_interval(wide, seed=3) == bootstrap_interval(wide, seed=3)
    with_nan = {**tight, "nan": [{"regret": math.nan}]}
    assert bootstrap_interval(with_nan) == bootstrap_interval(tight)
    assert all(math.isnan(v) for v in bootstrap_interval(_runs({"x": [math.nan]})))


def test_bootstrap_interval_leaves_as_many_draws_out_on_each_side():
    """Negating every regret negates and swaps the interval's ends (the same draws, mirrored): true only when
    the lower and upper ends sit as many sorted draws in from their ends."""
    runs = {f"t{i}": [0.1 * 3 ** i, -0.2 * i, 0.05 * i * i] for i in range(7)}
    neg = {t: [-v for v in vs] for t, vs in runs.items()}
    for n in (2000, 101, 37):
        lo, hi = bootstrap_interval(_runs(runs), n=n)
        nlo, nhi = bootstrap_interval(_runs(neg), n=n)
        assert (nlo, nhi) == (pytest.approx(-hi), pytest.approx(-lo))


def test_render_writes_the_report_again_from_its_json(tmp_path, capsys):
    from benchmarks import quality as script
    out = tmp_path / "q"
    assert cli.main(["evaluate", "--tasks", "iris", "--methods", "random16,sh", "--seeds", "2", "--steps", "20",
                     "--out", str(out)]) == 0
    path = out / "quality.json"
    before = json.loads(path.read_text())
    # a report written before a change to the summary: drop the interval and the markdown
    for row in before["summary"].values():
        row.pop("regret_interval")
        row.pop("regret_worst")
    path.write_text(json.dumps(before))
    (out / "quality.md").unlink()
    capsys.readouterr()
    assert script.main(["--render", str(path)]) == 0
    after = json.loads(path.read_text())
    assert after["rows"] == before["rows"] and after["references"] == before["references"]
    assert after["command"] == before["command"] and "metahp-fast evaluate" in after["command"]
    for m, row in after["summary"].items():
        assert row["regret"] == pytest.approx(before["summary"][m]["regret"])
        lo, hi = row["regret_interval"]
        assert lo <= row["regret"] <= hi
        assert row["regret_worst"] == max(r["regret"] for r in after["rows"] if r["method"] == m) >= row["regret"]
    md = (out / "quality.md").read_text()
    assert md.startswith("# Tuner quality") and "| method | median regret | 90% interval | worst |" in md
    sh = after["summary"]["sh"]
    lo, hi = sh["regret_interval"]
    assert f"| sh | {sh['regret']:.3f} | {lo:.3f} to {hi:.3f} | {sh['regret_worst']:.3f} | " in md
    assert "Made by `metahp-fast evaluate" in md


def test_render_says_what_is_wrong_with_its_argument(tmp_path, capsys):
    from benchmarks import quality as script
    assert script.main(["--render", str(tmp_path / "missing.json")]) == 2
    assert "--render: no such file" in capsys.readouterr().err
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"rows": []}))
    assert script.main(["--render", str(bad)]) == 2
    assert "is not a quality report" in capsys.readouterr().err
