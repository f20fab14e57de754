"""The learner's VOC path through notebooks 04 and 05, end to end on a CPU in about a minute.

A small VOC-layout folder (Shapes images, annotations renamed to five of VOC's 20 classes) stands
in for VOCdevkit under ``$SSDLIB_DATA``; ``$SSDLIB_COURSE_OVERRIDES`` shrinks the ``ssd300_voc``
recipe (a few iterations of batch 2, no ImageNet download) and ``SSDLIB_COURSE_VOC=1`` runs it on
the CPU. Notebook 04 must save its run where 05 looks (``outputs/ssd300_voc``), and 05 must
evaluate that run on VOC2007 test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from notebook_runner import execute_notebook

from ssdlib.config import VOC_CLASS_NAMES
from ssdlib.data.shapes import SHAPES_CLASSES
from ssdlib.data.shapes_io import write_shapes

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = pytest.mark.slow


def make_voc_folder(root: Path) -> Path:
    """``root/VOCdevkit/VOC2007`` with trainval and test image sets, from rendered Shapes."""
    shapes = write_shapes(root / "shapes", num_train=12, num_test=8, image_size=200, progress=False)
    src = shapes / "VOCshapes"
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    shutil.copytree(src / "JPEGImages", voc / "JPEGImages")
    (voc / "Annotations").mkdir()
    rename = dict(zip(SHAPES_CLASSES, VOC_CLASS_NAMES))
    for xml in (src / "Annotations").glob("*.xml"):
        text = re.sub(r"<name>(\w+)</name>", lambda m: f"<name>{rename[m.group(1)]}</name>", xml.read_text())
        (voc / "Annotations" / xml.name).write_text(text)
    for split, name in (("train", "trainval"), ("test", "test")):
        shutil.copy(src / "ImageSets" / "Main" / f"{split}.txt", voc / "ImageSets" / "Main" / f"{name}.txt")
    return voc


def _execute(name: str, cwd: Path, out: Path) -> str:
    return execute_notebook(NOTEBOOKS / name, cwd, out / name)


def test_04_trains_on_voc_and_05_evaluates_that_run(tmp_path, monkeypatch):
    data, outputs = tmp_path / "data", tmp_path / "outputs"
    make_voc_folder(data)
    overrides = ("data.train_splits=[2007/trainval] train.max_iter=4 train.batch_size=2 "
                 "train.checkpoint_period=1 train.warmup_iters=1 train.lr_steps=[3] "
                 "model.backbone_weights=none data.num_workers=0 test.batch_size=4")  # fmt: skip
    for key, value in {"SSDLIB_DATA": str(data), "SSDLIB_OUTPUTS": str(outputs), "SSDLIB_COURSE_VOC": "1",
                       "SSDLIB_COURSE_OVERRIDES": overrides, "MPLBACKEND": "Agg",
                       "TORCH_HOME": str(tmp_path / "torch")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)

    text04 = _execute("04_gpu_training.ipynb", NOTEBOOKS, tmp_path)
    assert "training ssd300_vgg16 on voc, 4 iterations of batch 2" in text04, text04[-2000:]
    assert (outputs / "ssd300_voc" / "config.yaml").is_file()
    assert sorted(p.name for p in (outputs / "ssd300_voc").glob("model_*.pth"))[-1] == "model_0000004.pth"
    assert not (tmp_path / "torch").exists(), "nothing was downloaded"

    text05 = _execute("05_evaluation.ipynb", NOTEBOOKS, tmp_path)
    assert f"evaluating the VOC model of {outputs / 'ssd300_voc'} on VOC2007 test" in text05
    assert "8 images, classes ['aeroplane', 'bicycle'" in text05, text05[:3000]
    assert not (tmp_path / "torch").exists(), "nothing was downloaded"
