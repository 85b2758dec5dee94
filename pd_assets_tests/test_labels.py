"""Derived labels: bbox by hand, and person attributes that match the sampled body."""

from __future__ import annotations

import numpy as np

from pd_assets.generation.prompts import age_band
from pd_assets.poses.labels import bbox_from_mask, to_camera


def test_bbox_covers_pixel_borders():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True  # rows 2-3, columns 3-6
    assert bbox_from_mask(mask) == (2.5, 1.5, 6.5, 3.5)
    assert bbox_from_mask(np.zeros((4, 4), bool)) == (0.0, 0.0, 0.0, 0.0)


def test_to_camera_hand_case():
    R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)  # 90 deg about z
    out = to_camera(np.array([[1.0, 2.0, 3.0]]), R, np.array([0.0, 0.0, 5.0]))
    assert np.allclose(out, [[-2.0, 1.0, 8.0]])


def test_anny_age_round_trips_through_its_own_calibration(anny_model):
    """The prompt's person words must describe the body that was sampled."""
    years = np.array([5.0, 12.0, 16.0, 30.0, 45.0, 62.0, 80.0])  # away from band edges
    age_index = anny_model.shape_names.index("age")
    shapes = np.tile(anny_model.neutral_shape(), (len(years), 1))
    shapes[:, age_index] = anny_model.age_from_years(years)
    back = [anny_model.person_attributes(s)["age_years"] for s in shapes]
    assert np.allclose(back, years, atol=0.5)
    assert [age_band(y) for y in back] == [age_band(y) for y in years]


def test_anny_gender_is_flipped_to_the_prompt_convention(anny_model):
    shape = anny_model.neutral_shape()
    g = anny_model.shape_names.index("gender")
    shape[g] = 0.0  # anny: 0 = male
    assert anny_model.person_attributes(shape)["gender"] == 1.0  # prompts: 1 = male
    shape[g] = 1.0
    assert anny_model.person_attributes(shape)["gender"] == 0.0


def test_sampled_bodies_get_matching_age_words(anny_model):
    rng = np.random.default_rng(3)
    shapes = anny_model.sample_shape(rng, 400)
    ages = np.array([anny_model.person_attributes(s)["age_years"] for s in shapes])
    assert 0.10 < (ages < 13).mean() < 0.25  # the sampler's 15% children, recovered
    assert ages.min() >= 3.5 and ages.max() <= 91
