"""``python -m ssdlib anchors analyze|fit --config C [key=value ...]``: how well the config's
priors cover its training objects, and a search for better ones.

    anchors analyze --config C [--data-root R] [--split S] [--json OUT] [--plot OUT.png]
    anchors fit --config C [--data-root R] [--split S] [--out fitted.yaml] [--budget N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ssdlib.engine.errors import USER_ERRORS, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="anchors_command", metavar="ACTION", required=True)
    for name, help_text in (("analyze", "coverage of the training objects by the priors"),
                            ("fit", "search the priors section for a better coverage")):  # fmt: skip
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default="shapes", help="built-in name or YAML path")
        p.add_argument("overrides", nargs="*", help="section.key=value overrides")
        p.add_argument("--data-root", type=Path, default=None, help="instead of data.root")
        p.add_argument("--split", action="append", default=None,
                       help="split to read (repeatable; default data.train_splits)")  # fmt: skip
        p.add_argument("--max-images", type=int, default=None, help="first N images per split")
        p.add_argument("--json", type=Path, default=None, help="write the report (JSON) here")
        if name == "analyze":
            p.add_argument("--plot", type=Path, default=None, help="write the figure (PNG) here")
        else:
            p.add_argument("--out", type=Path, default=None,
                           help="fitted config (default: <config stem>_fitted.yaml)")  # fmt: skip
            p.add_argument("--budget", type=int, default=None,
                           help="most priors allowed (default: current count + 10 %%)")  # fmt: skip


def load_objects(cfg, splits, data_root, max_images):
    """The non-difficult boxes of each image of ``splits`` (relative, after the test resize)."""
    from ssdlib.anchors.coverage import dataset_objects
    from ssdlib.engine.datasets import build_split_dataset

    images = []
    for split in splits or cfg.data.train_splits:
        images += dataset_objects(build_split_dataset(cfg, split, data_root), max_images)
    return images


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from ssdlib.anchors.coverage import analyze_boxes, format_report, summarize
    from ssdlib.config import load_config
    from ssdlib.priors import generate_priors

    try:
        cfg = load_config(args.config, args.overrides)
        images = load_objects(cfg, args.split, args.data_root, args.max_images)
        threshold, size = cfg.train.iou_threshold, cfg.input.image_size
        result = analyze_boxes(images, generate_priors(cfg.priors), threshold, size)
        if result.best_iou.numel() == 0:
            raise ValueError("no (non-difficult) objects in the data: nothing to analyze")
        summary = summarize(result)
        if args.anchors_command == "analyze":
            print(format_report(summary))
            if args.json:
                _atomic_text(args.json, json.dumps(summary, indent=1))
            if args.plot:
                from ssdlib.anchors.plot import save_coverage_plot

                save_coverage_plot(result, summary, cfg.priors, args.plot)
            return 0
        return _fit(args, cfg, images, summary)
    except USER_ERRORS as e:
        return report(e)


def _fit(args, cfg, images, before: dict) -> int:
    import torch

    from ssdlib.anchors.coverage import analyze_boxes, summarize
    from ssdlib.anchors.fit import fit_priors
    from ssdlib.config import dump_config, load_config
    from ssdlib.priors import generate_priors

    boxes = torch.cat([b.reshape(-1, 4) for b in images]).numpy()
    fit = fit_priors(boxes, cfg.priors, cfg.train.iou_threshold, args.budget)
    fitted = dataclasses.replace(cfg, priors=fit.priors)
    after = summarize(analyze_boxes(images, generate_priors(fit.priors), cfg.train.iou_threshold,
                                    cfg.input.image_size))  # fmt: skip
    print(f"searched {fit.evaluations} candidates, budget {fit.budget} priors; "
          f"{len(fit.moves)} change(s): " + "; ".join(fit.moves))  # fmt: skip
    print(f"{'':>14} {'priors':>7} {'coverage':>9} {'best IoU':>9} {'pos/obj':>8} {'forced':>7}")
    for name, r in (("before", before), ("after", after)):
        print(f"{name:>14} {r['num_priors']:>7} {100 * r['coverage']:>8.1f}% "
              f"{r['mean_best_iou']:>9.3f} {r['mean_positives']:>8.2f} {r['forced_only']:>7}")
    for b0, b1 in zip(before["by_size"], after["by_size"]):
        if b0["count"]:
            print(f"{b0['label']:>14} {b0['count']:>7} {100 * b0['coverage']:>8.1f}% -> "
                  f"{100 * b1['coverage']:.1f}%")  # fmt: skip
    out = args.out or Path(f"{Path(args.config).stem}_fitted.yaml")
    _atomic_text(out, dump_config(fitted))
    load_config(out)  # what train will read: fail here, not later
    print(f"fitted config written to {out}")
    if args.json:
        strip = {k: v for k, v in after.items() if k != "objects"}
        _atomic_text(args.json, json.dumps({
            "before": {k: v for k, v in before.items() if k != "objects"}, "after": strip,
            "priors": dataclasses.asdict(fit.priors), "moves": fit.moves, "budget": fit.budget,
        }, indent=1))  # fmt: skip
    return 0
