"""The synthetic-scene fixture used by the flow and API tests stays deterministic and sane."""

from __future__ import annotations

import numpy as np

from tests.fixtures import synthetic


def test_class_names() -> None:
    assert synthetic.CLASS_NAMES == ("circle", "square", "triangle")


def test_same_seed_same_scene() -> None:
    a_img, a_gt = synthetic.render_scene(1_000_123)
    b_img, b_gt = synthetic.render_scene(1_000_123)
    assert a_gt == b_gt
    assert np.array_equal(np.asarray(a_img), np.asarray(b_img))
    _c_img, c_gt = synthetic.render_scene(1_000_124)
    assert c_gt != a_gt


def test_easy_scenes_are_easy() -> None:
    for seed in range(synthetic.HELD_OUT_SEED_START, synthetic.HELD_OUT_SEED_START + 50):
        img, gt = synthetic.render_scene(seed)
        w, h = img.size
        assert img.mode == "RGB"
        assert 320 <= w <= 640
        assert 320 <= h <= 640
        assert 2 <= len(gt) <= 4
        for g in gt:
            assert g.class_name == synthetic.CLASS_NAMES[g.class_id]
            assert 0 <= g.x1 < g.x2 <= w
            assert 0 <= g.y1 < g.y2 <= h
            assert g.x2 - g.x1 >= 0.12 * min(w, h) - 1
        for i, a in enumerate(gt):
            for b in gt[i + 1 :]:
                assert synthetic.iou(a.box, b.box) == 0.0


def test_explicit_size_and_count() -> None:
    img, gt = synthetic.render_scene(7, width=400, height=333, n_objects=3)
    assert img.size == (400, 333)
    assert len(gt) == 3


def test_ground_truth_box_is_tight() -> None:
    img, gt = synthetic.render_scene(1_000_200, n_objects=2)
    arr = np.asarray(img).astype(int)
    for g in gt:
        x1, y1, x2, y2 = (int(v) for v in g.box)
        inside = arr[y1:y2, x1:x2]
        # The shape touches all four sides of its box (its colour is the most saturated there).
        sat = inside.max(axis=2) - inside.min(axis=2)
        mask = sat > 100
        assert mask[0].any()
        assert mask[-1].any()
        assert mask[:, 0].any()
        assert mask[:, -1].any()


def test_match_helper() -> None:
    gt = [synthetic.GroundTruth(0, "circle", 10, 10, 50, 50)]
    assert synthetic.match(gt, [(0, (11, 11, 50, 50))])["ok"]
    assert not synthetic.match(gt, [(1, (11, 11, 50, 50))])["ok"]  # wrong class
    m = synthetic.match(gt, [(0, (11, 11, 50, 50)), (0, (10, 10, 49, 50))])
    assert not m["ok"]
    assert m["extra"] == [1]
