"""Sample grids: a PNG laid out as one block per model (rows = classes, columns = samples), deterministic given the
seed, and its inline HTML figure."""
from __future__ import annotations

import base64
import io

import pytest
import torch

pytest.importorskip("diffusers")

import expunge  # noqa: E402
from expunge.gen.base import GenerativeModel  # noqa: E402
from expunge.gen.report import (CELL_PX, LABEL_PX, TITLE_PX, grid_html, grid_pixels, grid_rows,  # noqa: E402
                                sample_grid)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Constant(GenerativeModel):
    """Draws every pixel of every image at one value (a known picture)."""

    kind = "diffusion"

    def __init__(self, value: float):
        super().__init__()
        self.value, self.n_classes, self.image_shape = value, 10, (1, 8, 8)

    def sample(self, labels, *, seed=0, **kw):
        return torch.full((len(labels), 1, 8, 8), self.value)


def decoded(png: bytes):
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")


@pytest.fixture(scope="module")
def tiny():
    return expunge.gen.unet(widths=(8, 16), T=50)


def test_the_png_has_the_layout_s_size(tiny):
    png = sample_grid({"original": tiny, "oracle": tiny}, [0, 3, 5], per_class=4, seed=0)
    assert png.startswith(PNG_SIGNATURE)
    width, height = grid_pixels(2, 3, 4)
    assert decoded(png).shape[:2] == (height, width)
    wide = sample_grid({"a": tiny, "b": tiny, "c": tiny, "d": tiny}, [1], per_class=6, seed=0, columns=2)
    width, height = grid_pixels(4, 1, 6, columns=2)
    assert decoded(wide).shape[:2] == (height, width)
    assert width == 2 * (LABEL_PX + 6 * CELL_PX) + 16 + 8 and height == 2 * (TITLE_PX + CELL_PX) + 16 + 8


def test_each_block_shows_its_model_s_samples():
    png = sample_grid({"white": Constant(1.0), "black": Constant(-1.0)}, [0, 1], per_class=3, columns=2)
    img = decoded(png)[..., :3].mean(-1)
    block = LABEL_PX + 3 * CELL_PX + 16    # the second block starts a gap after the first
    inner = slice(TITLE_PX + 4, TITLE_PX + CELL_PX - 4)     # inside the first sample of each block
    first = img[inner, LABEL_PX + 4: LABEL_PX + CELL_PX - 4]
    second = img[inner, block + LABEL_PX + 4: block + LABEL_PX + CELL_PX - 4]
    assert first.min() > 0.95 and second.max() < 0.05


def test_the_grid_is_deterministic_given_the_seed(tiny):
    a = sample_grid({"m": tiny}, [2, 7], per_class=5, seed=3)
    assert a == sample_grid({"m": tiny}, [2, 7], per_class=5, seed=3)
    assert a != sample_grid({"m": tiny}, [2, 7], per_class=5, seed=4)


def test_report_grids_show_the_forgotten_classes_first_and_marked():
    classes, labels = grid_rows(12, [7, 3], ["c%d" % c for c in range(12)])
    assert classes == [7, 3, 0, 1, 2, 4, 5, 6, 8, 9] and labels[7] == "c7 *" and labels[0] == "c0"
    assert grid_rows(4, [9])[0] == [0, 1, 2, 3]                        # out-of-range classes are not shown
    assert grid_rows(20, list(range(12)))[0] == list(range(12))       # every forgotten class, beyond the limit


def test_grid_html_is_an_inline_figure_with_a_caption(tiny):
    html = grid_html({"original": tiny}, [0, 1], per_class=2, caption="digits <0 and 1>")
    assert html.startswith("<figure>") and "digits &lt;0 and 1&gt;" in html
    uri = html.split("src='", 1)[1].split("'", 1)[0]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "2 samples per class" in grid_html({"original": tiny}, [0], per_class=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(models={}), "non-empty dict"),
    (dict(classes=[]), "non-empty list"),
    (dict(classes=[10]), "class 10 is out of range"),
    (dict(per_class=0), "per_class must be"),
    (dict(columns=0), "columns must be"),
])
def test_bad_arguments_are_refused_in_one_line(tiny, kwargs, match):
    args = dict(models={"m": tiny}, classes=[0], per_class=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample_grid(args.pop("models"), args.pop("classes"), **args)
    with pytest.raises(TypeError, match="image generators"):
        sample_grid({"m": torch.nn.Linear(2, 2)}, [0])
