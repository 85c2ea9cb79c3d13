"""--projection umap|tsne for features with D > 2: the libraries' own maps, kept comparable
across epochs; PCA without the extra; the animation of a --feat-dim 3 run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore
from cl_analyze.viz import PlotOptions, load_plot_run, plot_runs
from cl_analyze.viz.projections import project_epochs
from tests.viz.test_plot import write_store


def blobs_over_epochs(epochs: int, per_class: int = 15, dim: int = 5) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (4, dim))
    labels = np.repeat(np.arange(4), per_class)
    rows = [
        centres[labels] * (1 + 0.2 * e) + rng.normal(0, 1, (len(labels), dim))
        for e in range(epochs)
    ]
    return rows, labels


def one_nn_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    distances = cdist(points, points)
    np.fill_diagonal(distances, np.inf)
    return float((labels[distances.argmin(1)] == labels).mean())


def test_tsne_places_every_epoch_into_the_last_epochs_map() -> None:
    open_tsne = pytest.importorskip("openTSNE", reason="pip install 'cl-analyze[umap]'")
    rows, labels = blobs_over_epochs(3)
    maps = project_epochs(rows, "tsne", seed=3)
    assert maps.shape == (3, len(labels), 2)
    # The last epoch is openTSNE's own map of it, with the same settings and seed.
    own = open_tsne.TSNE(perplexity=19.0, random_state=3, n_jobs=1).fit(rows[-1])
    np.testing.assert_allclose(maps[-1], np.asarray(own), rtol=1e-5, atol=1e-4)
    for epoch_map in maps:  # every epoch keeps its classes apart in that map
        assert one_nn_accuracy(epoch_map, labels) == 1.0
    # Placed, not refitted: the same epoch placed twice lands on the same points.
    again = project_epochs([rows[0], rows[0], rows[-1]], "tsne", seed=3)
    np.testing.assert_allclose(again[0], again[1], atol=1e-5)
    np.testing.assert_allclose(again[0], maps[0], atol=1e-5)


def test_pca_needs_no_extra_and_2d_features_are_drawn_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # as if not installed
    flat = write_store(tmp_path / "flat.h5", dim=2)
    drawn = load_plot_run(flat, max_points=None, projection_name="umap")  # D = 2: no map needed
    with RunStore(flat) as store:
        raw = store.features("test")
    assert sorted(map(tuple, drawn.points["test"][1].tolist())) == sorted(
        map(tuple, raw[1].astype(np.float32).tolist())
    )
    deep = write_store(tmp_path / "deep.h5", dim=4)
    with pytest.raises(CLAnalyzeError, match=r"pip install 'cl-analyze\[umap\]'"):
        load_plot_run(deep, projection_name="umap")
    with pytest.raises(CLAnalyzeError, match="pick one of pca, umap, tsne"):
        load_plot_run(deep, projection_name="isomap")


@pytest.mark.slow  # umap-learn compiles with numba on first use: about 1-2 min on 2 cores
def test_a_feat_dim_3_run_animates_with_aligned_umap(tmp_path: Path) -> None:
    pytest.importorskip("umap", reason="pip install 'cl-analyze[umap]'")
    import imageio.v3 as iio

    from cl_analyze.training.fit import fit
    from tests.conftest import tiny_config

    run = tmp_path / "deep"
    fit(tiny_config(loss="center", feat_dim=3), run)
    options = PlotOptions(
        out=tmp_path / "figs",
        projection="umap",
        animation_formats=("gif",),
        figure_formats=("png",),
        metrics=False,
        split="test",
    )
    result = plot_runs([run], options)
    gif = next(path for path in result.files if path.suffix == ".gif")
    assert len(iio.imread(gif, index=None)) >= 3  # one frame per epoch row
    drawn = load_plot_run(run, projection_name="umap", splits=("test",))
    assert drawn.axis_labels == ("UMAP 1", "UMAP 2") and drawn.centers is None
    # Aligned: a sample moves less between consecutive maps than samples lie apart.
    maps = drawn.points["test"]
    step = np.linalg.norm(maps[2] - maps[1], axis=1).mean()
    spread = cdist(maps[2], maps[2]).mean()
    assert step < spread


@pytest.mark.slow  # numba compilation, as above
def test_aligned_umap_keeps_identical_epochs_together() -> None:
    pytest.importorskip("umap", reason="pip install 'cl-analyze[umap]'")
    rows, labels = blobs_over_epochs(1, per_class=20)
    maps = project_epochs([rows[0], rows[0]], "umap")
    spread = cdist(maps[0], maps[0]).mean()
    assert np.linalg.norm(maps[1] - maps[0], axis=1).mean() < 0.1 * spread
    assert one_nn_accuracy(maps[1], labels) == 1.0


def test_projection_is_a_choice_of_plot_and_report() -> None:
    from typer.testing import CliRunner

    from cl_analyze.cli import app
    from cl_analyze.cli_figures import PROJECTIONS
    from cl_analyze.viz.projections import PROJECTIONS as KNOWN

    assert PROJECTIONS == KNOWN
    for command in ("plot", "report"):
        result = CliRunner().invoke(app, [command, "run", "--projection", "isomap"])
        assert result.exit_code == 2
        assert "pca, umap, tsne" in result.output
