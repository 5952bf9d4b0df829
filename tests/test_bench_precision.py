"""The fp32-against-bf16 benchmark's summary: diverged and failed runs are reported, not averaged in."""

from __future__ import annotations

from benchmarks.bench_precision_accuracy import Outcome, precision_row


def test_a_clean_comparison_is_paired_by_seed() -> None:
    bf16 = [Outcome(0.78, "", 0), Outcome(0.85, "", 3)]
    row = precision_row("concat", [Outcome(0.80), Outcome(0.84)], bf16)
    assert row["fp32_acc"] == "82.00 ± 2.83"  # mean 0.82, sample std of (0.80, 0.84) = 0.0283
    assert row["bf16_acc"] == "81.50 ± 4.95"
    assert row["per_seed_difference"] == "-2.00, +1.00"
    assert row["bf16_minus_fp32"] == "-0.50"
    assert row["bf16_skipped_steps"] == "0, 3"


def test_diverged_and_failed_runs_are_named_and_left_out_of_the_means() -> None:
    fp32 = [Outcome(0.80), Outcome(0.82), Outcome(0.84)]
    bf16 = [Outcome(0.79), Outcome(1 / 6, "diverged"), Outcome(None, "failed: LinAlgError: svd")]
    row = precision_row("lfm_h", fp32, bf16)
    assert row["fp32_acc"] == "82.00 ± 2.00"
    assert row["bf16_acc"] == "79.00 ± 0.00 (2 of 3 diverged or failed)"
    assert row["bf16_minus_fp32"] == "-1.00"
    assert row["per_seed_difference"] == "-1.00, bf16 0.1667 (diverged), bf16 failed: LinAlgError: svd"
    assert row["bf16_skipped_steps"] == "—, —, —"


def test_no_comparable_seed_leaves_the_difference_empty() -> None:
    row = precision_row("mie", [Outcome(0.8)], [Outcome(None, "failed: RuntimeError: x")])
    assert row["bf16_acc"] == "— (1 of 1 diverged or failed)" and row["bf16_minus_fp32"] == "—"
