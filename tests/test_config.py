import pytest

from ssdlib.config import (
    Config,
    ConfigError,
    builtin_names,
    config_from_dict,
    dump_config,
    load_config,
)


def test_builtin_names():
    assert {"ssd300_voc", "ssd512_voc", "ssd300_coco", "ssd512_coco", "shapes"} <= set(
        builtin_names()
    )


@pytest.mark.parametrize("name", ["ssd300_voc", "ssd512_voc", "ssd300_coco", "ssd512_coco", "shapes"])
def test_round_trip(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / "cfg.yaml"
    dump_config(cfg, path)
    assert load_config(str(path)) == cfg


def test_paper_defaults():
    cfg = load_config("ssd300_voc")
    p = cfg.priors
    assert p.feature_maps == [38, 19, 10, 5, 3, 1]
    assert p.strides == [8, 16, 32, 64, 100, 300]
    assert p.min_sizes == [30, 60, 111, 162, 213, 264]
    assert p.max_sizes == [60, 111, 162, 213, 264, 315]
    assert p.aspect_ratios == [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    assert p.variances == [0.1, 0.2] and p.clip is True
    assert cfg.input.pixel_mean == [123, 117, 104]
    assert cfg.train.iou_threshold == 0.5 and cfg.train.neg_pos_ratio == 3
    assert (cfg.test.nms_threshold, cfg.test.score_threshold, cfg.test.max_per_image) == (
        0.45, 0.01, 100,
    )
    coco = load_config("ssd300_coco").priors
    assert coco.min_sizes == [21, 45, 99, 153, 207, 261]
    assert coco.max_sizes == [45, 99, 153, 207, 261, 315]
    assert load_config("ssd512_voc").priors.feature_maps == [64, 32, 16, 8, 4, 2, 1]
    assert Config() == config_from_dict({})  # dataclass defaults are SSD300 VOC too


def test_overrides():
    cfg = load_config("ssd300_voc", ["train.lr=0.002", "priors.clip=false", "train.lr_steps=[5,9]"])
    assert cfg.train.lr == 0.002 and cfg.priors.clip is False and cfg.train.lr_steps == [5, 9]
    assert load_config("ssd300_voc", ["test.top_k_candidates=400"]).test.top_k_candidates == 400


def test_yaml_words_for_text_options(tmp_path):
    # YAML 1.1 reads `off` as False; train.amp=off must still mean the word.
    assert load_config("shapes", ["train.amp=off"]).train.amp == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_config(str(path)).train.amp == "off"
    with pytest.raises(ConfigError, match=r"train.amp is 'on'; expected one of"):
        load_config("shapes", ["train.amp=yes"])


def test_shapes_views_range():
    assert load_config("shapes", ["data.views=8"]).data.views == 8
    with pytest.raises(ConfigError, match=r"data.views is 9; expected one of \[1, 2"):
        load_config("shapes", ["data.views=9"])


def test_unknown_key_names_key_file_and_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config("ssd300_voc", ["train.lrr=1"])
    msg = str(e.value)
    assert "train.lrr" in msg and "ssd300_voc.yaml" in msg and "weight_decay" in msg


def test_unknown_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trian:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'trian'.*model, priors"):
        load_config(str(path))


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("train.lr=fast", r"train.lr must be float"),
        ("train.batch_size=2.5", r"train.batch_size must be int"),
        ("priors.clip=1", r"priors.clip must be bool"),
        ("priors.feature_maps=[38, x]", r"priors.feature_maps\[1\] must be int"),
        ("priors.min_sizes=[1, 2]", r"priors.min_sizes has 2 entries"),
        ("model.num_classes=3", r"model.num_classes is 3 but data.class_names has 20"),
        ("model.name=resnet", r"model.name is 'resnet'"),
        ("input.image_size=512", r"input.image_size \(512\) differs"),
    ],
)
def test_type_and_consistency_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("ssd300_voc", [override])


def test_missing_file_lists_builtins():
    with pytest.raises(ConfigError, match="built-in configs: .*ssd300_voc"):
        load_config("no_such_config")


def test_bad_yaml_and_unsafe_tags(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(str(path))


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("ssd300_voc", ["lr=0.1"])
