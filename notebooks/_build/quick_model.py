"""The cells notebooks 05 and 06 share: the quick Shapes model of notebook 04.

Notebook 04 trains it (120 iterations, 40 at a time) and saves the final checkpoint into
``outputs/notebooks/shapes_quick``; 05 and 06 load it from there, or train the same recipe in
one go when it is missing. Resumes are exact (notebook 04 shows it), so both ways give the same
weights and the notebooks' checked outputs do not depend on which notebook ran first.
"""

from common import code, md

# Must stay equal to the shapes run of make_04.py: tests/test_notebooks_meta.py checks the
# committed notebooks (test_quick_model_recipe_matches_notebook_04).
QUICK_RECIPE = ('["train.batch_size=16", "train.max_iter=120", "train.lr_steps=[80,105]", '
                '"train.warmup_iters=20", "train.amp=off"]')

MODEL_MD = md(r"""
## The model

The light SSD trained on Shapes in notebook 04: only 120 iterations of batch 16, so a **weak**
detector — enough to run every step of this notebook, not to show good numbers. If it is not in
`outputs/notebooks/shapes_quick` yet, the next cell trains it (about 2 minutes on a 2-core CPU).
`make demo` trains the same model properly (5,200 iterations of batch 32) into `outputs/demo/train`:
set `USE_DEMO_MODEL = True` to use that one (the numbers below then change).
""")

MODEL_CELL = code(
    f'''
# (not compared: paths, and whether it had to train)
from ssdlib.config import load_config
from ssdlib.engine import latest_checkpoint, load_checkpoint, load_model, train

USE_DEMO_MODEL = False
OUTPUTS = Path(os.environ.get("SSDLIB_OUTPUTS") or Path.cwd().parent / "outputs")
QUICK_DIR = OUTPUTS / "notebooks" / "shapes_quick"
cfg = load_config("shapes", {QUICK_RECIPE})
if device.type == "cpu":  # one core per DataLoader worker, the rest for the convolutions
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.data.num_workers))
demo_ckpt = latest_checkpoint(OUTPUTS / "demo" / "train")
if USE_DEMO_MODEL and demo_ckpt is not None:
    cfg, ckpt = load_config("shapes"), demo_ckpt
else:
    ckpt = latest_checkpoint(QUICK_DIR)
    if ckpt is None or load_checkpoint(ckpt)["iteration"] < cfg.train.max_iter:
        print("training the quick Shapes model (120 iterations of batch 16) ...")
        train(cfg, QUICK_DIR, progress=False)
        ckpt = latest_checkpoint(QUICK_DIR)
model = load_model(cfg, ckpt, device)
# The quick model's class scores stay low (mostly 0.05-0.25): pictures and error counts use a
# lower score threshold for it than the usual 0.5.
SCORE = 0.5 if USE_DEMO_MODEL else 0.1
print(f"model from {{ckpt}}")
if demo_ckpt is not None and not USE_DEMO_MODEL:
    print(f"(a make-demo model is available: {{demo_ckpt}})")
''',
    check=False,
)

MODEL_INFO = code(
    r'''
print(f"{cfg.model.name}, {model.num_classes} classes {cfg.data.class_names}, "
      f"trained {load_checkpoint(ckpt)['iteration']} iterations, input {cfg.input.image_size} px, "
      f"{len(model.priors)} priors; score threshold for pictures: {SCORE}")
''',
)

# The model section of notebooks 05 and 06, in order: what the model is, load or train it, describe it.
MODEL_SECTION = [MODEL_MD, MODEL_CELL, MODEL_INFO]
