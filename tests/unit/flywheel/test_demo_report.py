"""report.json keeps its contract; the table and the plot show every generation."""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.demo.prediction import PredictionCheck
from flywheel.demo.report import (
    DemoReport,
    GenerationResult,
    HeldOutMetrics,
    OfflineMetrics,
    OnlineMetrics,
    OracleLift,
    prediction_points,
    render_table,
    write_report,
)


def _report() -> DemoReport:
    gens = (
        GenerationResult(
            generation=1,
            version="policy-g1",
            parent="base",
            job_kind="grpo",
            training={"selected_prompts": 64.0, "skipped_groups": 3.0},
            offline=OfflineMetrics(
                instruction_following=0.72,
                violation_rate=0.12,
                rm_win_rate=0.61,
                rm_predicted_lift=0.05,
                rm_predicted_lift_ci_low=0.02,
                rm_predicted_lift_ci_high=0.08,
            ),
            decision="promoted",
            online=OnlineMetrics(
                continue_rate_lift=0.08,
                ci_low=0.03,
                ci_high=0.13,
                depth_lift=0.6,
                breadth_lift=0.04,
                n_baseline=900,
                n_candidate=300,
            ),
            oracle_continue_rate=0.57,
        ),
        GenerationResult(
            generation=2,
            version="policy-g2",
            parent="policy-g1",
            planted_bad=True,
            offline=OfflineMetrics(
                instruction_following=0.40,
                violation_rate=0.45,
                rm_win_rate=0.2,
                passed=False,
                reasons=("violation rate up",),
            ),
            decision="rejected",
        ),
    )
    return DemoReport(
        recipe="grpo",
        base_version="base",
        base=HeldOutMetrics(instruction_following=0.58, violation_rate=0.26, oracle_continue_rate=0.5),
        final_version="policy-g1",
        final=HeldOutMetrics(instruction_following=0.72, violation_rate=0.12, oracle_continue_rate=0.57),
        generations=gens,
        ceiling_oracle_continue_rate=0.64,
        oracle_final_vs_base=OracleLift(lift=0.07, ci_low=0.04, ci_high=0.1, contexts=96, samples_per_context=4),
        prediction=PredictionCheck.of(prediction_points(gens)),
        wall_s=321.0,
    )


def test_report_json_holds_the_documented_fields(tmp_path: Path) -> None:
    json_path, png_path = write_report(_report(), tmp_path / "out")
    doc = json.loads(json_path.read_text())
    assert doc["base"] == {"instruction_following": 0.58, "violation_rate": 0.26, "oracle_continue_rate": 0.5}
    assert doc["ceiling_oracle_continue_rate"] == 0.64 and doc["oracle_final_vs_base"]["ci_low"] == 0.04
    assert doc["final"]["instruction_following"] == 0.72 and doc["wall_s"] == 321.0
    first, second = doc["generations"]
    assert first["version"] == "policy-g1" and first["decision"] == "promoted"
    assert set(first["offline"]) >= {"instruction_following", "violation_rate", "rm_win_rate"}
    assert set(first["online"]) >= {"continue_rate_lift", "ci_low", "ci_high", "depth_lift", "breadth_lift"}
    assert second["decision"] == "rejected" and second["online"]["continue_rate_lift"] is None
    assert first["job_kind"] == "grpo" and doc["recipe"] == "grpo" and first["training"]["skipped_groups"] == 3.0
    assert first["offline"]["rm_predicted_lift_ci_low"] == 0.02
    assert doc["prediction"]["n"] == 1 and doc["prediction"]["spearman"] is None and doc["prediction"]["mae"] is None
    assert doc["prediction"]["points"][0] | {"observed_ci_low": 0.03} == {
        "generation": 1,
        "version": "policy-g1",
        "decision": "promoted",
        "predicted": 0.05,
        "predicted_ci_low": 0.02,
        "predicted_ci_high": 0.08,
        "observed": 0.08,
        "observed_ci_low": 0.03,
        "observed_ci_high": 0.13,
    }
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


def test_table_has_a_row_per_generation_and_the_headline() -> None:
    table = render_table(_report())
    assert "policy-g1" in table and "policy-g2 (planted)" in table and "rejected" in table
    assert "[+3.00, +13.00]" in table
    assert "ceiling  64.0%, 50% of the headroom captured" in table
    assert "58.0% →  72.0%" in table
    assert " grpo " in table and "+5.00pp" in table  # the recipe and the predicted lift per generation
    assert "1 generation(s) with both, too few to compare" in table and "recipe grpo" in table


def test_a_comparison_of_recipes_has_each_learning_curve_and_the_difference(tmp_path: Path) -> None:
    from flywheel.demo.compare import compare, plot_compare, render_compare

    sft = _report()
    better = sft.model_copy(
        update={
            "recipe": "grpo",
            "final": sft.final.model_copy(update={"oracle_continue_rate": 0.60}),
            "oracle_final_vs_base": OracleLift(
                lift=0.10, ci_low=0.06, ci_high=0.14, contexts=96, samples_per_context=4
            ),
        }
    )
    report = compare(("sft", "grpo"), [sft, better], tmp_path)
    assert [r.recipe for r in report.runs] == ["sft", "grpo"] and report.runs[0].promoted == 1
    assert report.runs[0].oracle_by_generation == (0.5, 0.57, None)
    assert report.last_minus_first is not None and abs(report.last_minus_first - 0.03) < 1e-9
    half = (0.03**2 + 0.04**2) ** 0.5  # the two half-widths in quadrature
    assert report.last_minus_first_ci_low is not None and abs(report.last_minus_first_ci_low - (0.03 - half)) < 1e-9
    assert "grpo - sft: +3.0 pp [-2.0, +8.0]" in render_compare(report)
    plot_compare(report, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
