import math

import pytest
import torch

from reference_impl import ref_priors
from ssdlib.boxes import cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh
from ssdlib.config import load_config
from ssdlib.priors import generate_priors, generate_priors_from, priors_per_map


@pytest.mark.parametrize(
    "name, total, per_map",
    [
        ("ssd300_voc", 8732, [5776, 2166, 600, 150, 36, 4]),
        ("ssd300_coco", 8732, [5776, 2166, 600, 150, 36, 4]),
        ("ssd512_voc", 24564, [16384, 6144, 1536, 384, 96, 16, 4]),
        ("ssd512_coco", 24564, [16384, 6144, 1536, 384, 96, 16, 4]),
    ],
)
def test_paper_prior_counts(name, total, per_map):
    cfg = load_config(name)
    assert priors_per_map(cfg.priors) == per_map
    assert generate_priors(cfg.priors).shape == (total, 4)


@pytest.mark.parametrize("name", ["ssd300_voc", "ssd512_voc", "ssd300_coco", "shapes"])
@pytest.mark.parametrize("clip", [True, False])
def test_priors_equal_reference_loops(name, clip):
    p = load_config(name).priors
    ours = generate_priors_from(p.image_size, p.feature_maps, p.strides, p.min_sizes,
                                p.max_sizes, p.aspect_ratios, clip)
    ref = ref_priors(p.image_size, p.feature_maps, p.strides, p.min_sizes, p.max_sizes,
                     p.aspect_ratios, clip)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("clip", [True, False])
def test_densified_shapes_priors_equal_the_reference_loop(clip):
    p = load_config("shapes").priors
    assert p.densify and max(p.densify) > 1  # the config as trained: 2x2 on the first two maps
    ours = generate_priors_from(p.image_size, p.feature_maps, p.strides, p.min_sizes,
                                p.max_sizes, p.aspect_ratios, clip, p.densify)
    ref = ref_priors(p.image_size, p.feature_maps, p.strides, p.min_sizes, p.max_sizes,
                     p.aspect_ratios, clip, p.densify)
    assert ours.shape == ref.shape == (sum(priors_per_map(p)), 4)
    assert torch.equal(ours, ref)
    if clip == p.clip:  # and the config path (what the model's buffer holds) is the same
        assert torch.equal(generate_priors(p), ours)


def test_first_location_sizes_ssd300():
    priors = generate_priors(load_config("ssd300_voc").priors)
    c = 0.5 / 37.5
    s, s2 = 30 / 300, math.sqrt(30 * 60) / 300
    q = math.sqrt(2)
    expected = torch.tensor([[c, c, s, s], [c, c, s2, s2], [c, c, s * q, s / q], [c, c, s / q, s * q]])
    torch.testing.assert_close(priors[:4], expected)
    # the last prior: the 1x1 map, ratio-2 box laid vertically, clipped to the image
    last = priors[-1]
    assert last[0] == 0.5 and last[1] == 0.5 and last[3] == 1.0


def test_clip_clamps_all_four_numbers():
    p = load_config("ssd300_voc").priors
    raw = generate_priors_from(300, [1], [300], [264], [315], [[2]], clip=False)
    clipped = generate_priors_from(300, [1], [300], [264], [315], [[2]], clip=True)
    assert raw.max() > 1 and clipped.max() == 1 and torch.equal(clipped, raw.clamp(0, 1))
    assert p.clip


def test_format_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    xyxy = torch.rand(100, 2, generator=g).repeat(1, 2) + torch.cat(
        [torch.zeros(100, 2), torch.rand(100, 2, generator=g)], 1
    )
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)
    assert torch.equal(xyxy_to_cxcywh(torch.tensor([[1.0, 2.0, 5.0, 10.0]])),
                       torch.tensor([[3.0, 6.0, 4.0, 8.0]]))


def test_encode_decode_round_trip_and_values():
    priors = generate_priors(load_config("ssd300_voc").priors)
    g = torch.Generator().manual_seed(1)
    lo = torch.rand(priors.shape[0], 2, generator=g) * 0.7
    boxes = torch.cat([lo, lo + 0.05 + torch.rand(priors.shape[0], 2, generator=g) * 0.25], 1)
    deltas = encode(boxes, priors)
    torch.testing.assert_close(decode(deltas, priors), boxes, atol=1e-5, rtol=1e-5)
    # a box equal to its prior encodes to zero; doubling its width gives log(2) / 0.2
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(encode(cxcywh_to_xyxy(prior), prior), torch.zeros(1, 4), atol=1e-6)
    wide = torch.tensor([[0.3, 0.3, 0.7, 0.7]])  # centre (0.5, 0.5), w 0.4, h 0.4
    t = encode(wide, prior)
    torch.testing.assert_close(t, torch.tensor([[0.0, 0.0, math.log(2) / 0.2, 0.0]]))
    shifted = torch.tensor([[0.42, 0.3, 0.62, 0.7]])  # centre x moves 0.02 = 0.1 * w
    torch.testing.assert_close(encode(shifted, prior)[0, 0], torch.tensor(1.0))


def test_decode_batched():
    priors = generate_priors(load_config("shapes").priors)
    deltas = torch.randn(3, priors.shape[0], 4, generator=torch.Generator().manual_seed(2))
    batched = decode(deltas, priors)
    for b in range(3):
        assert torch.equal(batched[b], decode(deltas[b], priors))
    torch.testing.assert_close(encode(batched, priors), deltas, atol=1e-4, rtol=1e-4)


def test_densified_squares_tile_the_cell():
    # One 2x2 map, stride 8, 16 px image; densify 2 -> 4 min-size squares per location.
    pri = generate_priors_from(16, [2], [8], [4], [8], [[2]], clip=False, densify=[2])
    assert pri.shape == (2 * 2 * (4 + 1 + 2), 4)
    first = pri[:7] * 16  # location (0, 0), centre (4, 4): offsets +-2 px, row-major
    assert first[:4, :2].tolist() == [[2, 2], [6, 2], [2, 6], [6, 6]]
    assert first[:4, 2:].tolist() == [[4, 4]] * 4
    assert first[4].tolist() == pytest.approx([4, 4, math.sqrt(32), math.sqrt(32)])
    assert first[5:, :2].tolist() == [[4, 4]] * 2  # s' and ratio boxes keep the centre
    # location (0, 1) is the same tiling moved by one stride
    torch.testing.assert_close(pri[7:14, 0] * 16, first[:, 0] + 8)
    # densify 1 is the plain SSD tiling, bit for bit; counts follow the config
    plain = generate_priors_from(16, [2], [8], [4], [8], [[2]], clip=False)
    assert torch.equal(generate_priors_from(16, [2], [8], [4], [8], [[2]], False, [1]), plain)
    cfg = load_config("shapes", ["priors.densify=[3, 1, 1, 1, 1]"]).priors
    assert priors_per_map(cfg)[0] == 20 * 20 * (9 + 1 + 2)
    assert generate_priors(cfg).shape[0] == sum(priors_per_map(cfg))


def test_densify_config_is_checked():
    from ssdlib.config import ConfigError

    with pytest.raises(ConfigError, match=r"priors.densify is \[2\]; expected \[\] or one integer"):
        load_config("shapes", ["priors.densify=[2]"])


def test_encode_equals_the_formula_bitwise():
    """encode works on corner pairs (complex views) for speed; same bits as eq. 2 on (..., P, 2)
    slices, broadcasting included (one box against all priors), -inf for the zero boxes of empty
    images; boxes without an aligned pair view (a column slice, mixed dtypes) take the formula."""
    from ssdlib.boxes import _corner_pairs, xyxy_to_cxcywh

    def formula(boxes, d, v=(0.1, 0.2)):
        g = xyxy_to_cxcywh(boxes)
        centre = (g[..., :2] - d[..., :2]) / d[..., 2:] / v[0]
        return torch.cat([centre, torch.log(g[..., 2:] / d[..., 2:]) / v[1]], dim=-1)

    priors = generate_priors(load_config("ssd300_voc").priors)
    g = torch.Generator().manual_seed(5)
    lo = torch.rand(3, priors.shape[0], 2, generator=g) * 0.8
    boxes = torch.cat([lo, lo + 0.01 + torch.rand(3, priors.shape[0], 2, generator=g) * 0.2], -1)
    boxes[1] = 0.0
    with_score = torch.cat([torch.zeros(3, priors.shape[0], 1), boxes], -1)[..., 1:]  # odd offset
    for b, d, pairs in ((boxes, priors, True), (boxes[0, :1], priors, True),
                        (boxes.double(), priors.double(), True), (with_score, priors, False)):  # fmt: skip
        assert (_corner_pairs(b, d, torch.broadcast_shapes(b.shape[:-1], d.shape[:-1])) is not None) == pairs
        assert torch.equal(encode(b, d), formula(b, d))
    mixed = encode(boxes.double(), priors)
    assert mixed.dtype == torch.float64 and torch.equal(mixed, formula(boxes.double(), priors))


def test_encode_keeps_gradients():
    """Inputs that need gradients take the formula (a complex dtype view has no gradient)."""
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.4]])
    boxes = torch.tensor([[0.4, 0.4, 0.6, 0.7], [0.2, 0.1, 0.35, 0.5]], requires_grad=True)
    deltas = encode(boxes, priors)
    deltas[:, 0].sum().backward()  # d t_cx / d x1 = d t_cx / d x2 = 1 / (2 w_prior v0)
    expected = 1 / (2 * priors[:, 2] * 0.1)
    torch.testing.assert_close(boxes.grad[:, [0, 2]], expected[:, None].expand(2, 2))
    with torch.no_grad():
        assert torch.equal(encode(boxes, priors), deltas)
