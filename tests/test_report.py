"""Tests of the report's plots: panels sized to the budgets, legend outside, seeds as a band."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from budgetax import report  # noqa: E402
from budgetax.report import plots  # noqa: E402
from budgetax.training.sweep.store import encode_curves  # noqa: E402

NAMES = ("loss", "lr")


def _runs(budgets, schedules=("linear", "rex"), seeds=(0, 1, 2)):
    runs = []
    for b in budgets:
        for k, s in enumerate(schedules):
            for seed in seeds:
                t = np.arange(1, b + 1)
                loss = (1.0 + 0.1 * seed + 0.05 * k) * np.exp(-t / b)
                lr = 0.01 * (1 - t / b)
                runs.append({
                    "run_id": f"{b}/{s}/{seed}", "budget_fraction": b / budgets[-1],
                    "budget": b, "schedule": s, "peak_lr": 0.01, "seed": seed, "status": "done",
                    "final": {"train_loss": float(loss[-1]), "test_accuracy": 0.5 + 0.01 * seed},
                    "curves": encode_curves({"loss": loss, "lr": lr}, NAMES)})
    return runs


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.lines]


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)),
                                      (5, (2, 3)), (7, (3, 3))])
def test_the_curve_grid_is_sized_to_the_budgets(n, shape):
    assert plots._grid(n) == shape
    budgets = [200 * (i + 1) for i in range(n)]
    runs = _runs(budgets)
    cells = report.summarize(runs)
    fig = report.curve_grid(cells, {r["run_id"]: r for r in runs}, "loss", NAMES)
    try:
        assert len(_data_axes(fig)) == n  # one panel per budget, no empty panel shown
        w, h = fig.get_size_inches()
        assert (w, h) == pytest.approx((plots.PANEL[0] * shape[1], plots.PANEL[1] * shape[0]))
    finally:
        plt.close(fig)


@pytest.mark.parametrize("n", [2, 5])
def test_the_legend_is_outside_every_data_panel(n):
    runs = _runs([100 * (i + 1) for i in range(n)])
    cells = report.summarize(runs)
    for fig in (report.metric_vs_budget(cells, "test_accuracy"),
                report.curve_grid(cells, {r["run_id"]: r for r in runs}, "lr", NAMES)):
        try:
            fig.canvas.draw()
            legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
            assert len(legends) == 1
            (legend,) = legends
            assert [t.get_text() for t in legend.get_texts()] == ["linear", "rex"]
            box = legend.get_window_extent()
            for ax in _data_axes(fig):
                assert not box.overlaps(ax.get_window_extent()), "legend over a data panel"
        finally:
            plt.close(fig)


def test_seeds_are_a_mean_line_with_a_min_max_band():
    runs = _runs([100, 200])
    by_id = {r["run_id"]: r for r in runs}
    cells = report.summarize(runs)
    fig = report.curve_grid(cells, by_id, "loss", NAMES)
    try:
        ax = _data_axes(fig)[0]  # budget 100
        line = next(ln for ln in ax.lines if ln.get_label() == "linear")
        mine = [r for r in runs if r["budget"] == 100 and r["schedule"] == "linear"]
        curves = np.stack([plots._smooth(np.frombuffer(r["curves"], "<f4").reshape(2, 100)[0], 2)
                           for r in mine])
        np.testing.assert_allclose(line.get_ydata(), curves.mean(0), rtol=1e-6)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 2  # one per schedule
        ys = bands[0].get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(curves.min(), rel=1e-6)
        assert ys.max() == pytest.approx(curves.max(), rel=1e-6)
        assert "mean of 3 seeds, band: min to max" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    one = _runs([100], seeds=(0,))
    fig = report.curve_grid(report.summarize(one), {r["run_id"]: r for r in one}, "loss", NAMES)
    try:
        assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
        assert "one seed" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_write_report_writes_the_three_plots(tmp_path):
    runs = _runs([50, 100])
    cells = report.summarize(runs)
    plots.write_plots(str(tmp_path), cells, {r["run_id"]: r for r in runs}, "test_accuracy", NAMES)
    for name in report.PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("higher", [True, False])
def test_the_table_and_the_lr_extension_pick_the_same_lr_in_the_metric_direction(higher):
    """A task's own metric (here ``test_f1``, no diagnostics) selects in its direction."""
    from budgetax.training.sweep import selection
    runs = [{"run_id": f"{lr}/{seed}", "budget_fraction": 1.0, "budget": 100,
             "schedule": "linear", "peak_lr": lr, "seed": seed, "status": "done",
             "final": {"test_f1": f1 + 0.01 * seed}}
            for lr, f1 in ((0.01, 0.2), (0.03, 0.9), (0.1, 0.5)) for seed in (0, 1)]
    (cell,) = report.summarize(runs, select="test_f1", metric="test_f1",
                               higher_is_better=higher)
    assert cell.best_lr == (0.03 if higher else 0.01)
    assert selection.lr_extension(runs, (0.01, 0.03, 0.1), "test_f1", higher) == (
        [] if higher else [0.00316])
