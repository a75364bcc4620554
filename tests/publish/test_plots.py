"""training.png: a grid readable at a model card's width, every series visible even with one point, whole steps."""

from matplotlib.ticker import MaxNLocator
from PIL import Image

from hf_dpo.publish.plots import plot_training, pyplot, training_figure

ONE_LOG = [
    {"step": 3, "loss": 0.6, "rewards/accuracies": 1.0, "rewards/margins": 0.2, "rewards/chosen": 0.1,
     "rewards/rejected": -0.1, "logps/mean_logratio": -0.5},
    {"step": 3, "eval_loss": 0.62, "eval_rewards/accuracies": 0.9, "eval_rewards/margins": 0.15},
]  # fmt: skip


def test_the_plot_is_a_grid_not_a_strip(tmp_path):
    path = plot_training(ONE_LOG, str(tmp_path / "training.png"))
    width, height = Image.open(path).size
    assert width <= 1000 and 0.7 < width / height < 1.5  # was 2310 x 374


def test_a_single_point_shows_and_the_step_axis_is_whole():
    figure = training_figure(ONE_LOG)
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == [
        "loss",
        "reward accuracy",
        "reward margin",
        "chosen / rejected reward",
        "mean log-ratio (policy - reference)",
    ]
    for axis in visible:
        data_lines = [line for line in axis.get_lines() if len(line.get_xdata()) and line.get_linestyle() != ":"]
        assert data_lines and all(line.get_marker() not in (None, "None", "") for line in data_lines)
        locator = axis.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
    pyplot().close(figure)


def test_a_panel_with_nothing_logged_says_so():
    figure = training_figure([{"step": 1, "loss": 0.69}])
    margin_axis = figure.axes[2]
    assert [text.get_text() for text in margin_axis.texts] == ["nothing logged"]
    pyplot().close(figure)
