"""Body model adapters: anny for real (from the anny cache), SMPL-X on a synthetic model file."""

from __future__ import annotations

import hashlib
import pickle
import re

import numpy as np
import pytest

from pd_assets.poses.body_models import (
    BodyModelError, BodyParams, load_body_model, sha256_files,
)
from pd_assets.poses.smplx_body import REQUIRED_SMPLX_KEYS, SmplxBodyModel
from pd_assets.skeleton import BODY_PARTS, COCO17_KEYPOINTS, SMPL_JOINTS
from pd_assets_tests.synthetic_smplx import (
    build_synthetic_smplx, smplx_joints, write_synthetic_smplx_model,
)

J = {name: i for i, name in enumerate(SMPL_JOINTS)}
K = {name: i for i, name in enumerate(COCO17_KEYPOINTS)}
BP = {name: i - 1 for name, i in J.items() if i > 0}  # body_pose row of each joint


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def posed(model, body_pose=None, global_orient=None, transl=None, shape=None, n=1):
    shape = np.repeat(model.neutral_shape()[None], n, 0) if shape is None else shape
    n = len(shape)
    return model.forward(BodyParams(
        np.zeros((n, 3)) if global_orient is None else global_orient,
        np.zeros((n, 21, 3)) if body_pose is None else body_pose,
        shape, np.zeros((n, 3)) if transl is None else transl))


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture(scope="module")
def anny_model():
    return load_body_model("anny")


@pytest.fixture(scope="module", autouse=True)
def smplx_cache(tmp_path_factory):
    """The sanitised SMPL-X copies go to a temp cache, not the checkout's .cache/."""
    cache = tmp_path_factory.mktemp("pd_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PD_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="module")
def smplx_dir(tmp_path_factory, smplx_cache):
    folder = tmp_path_factory.mktemp("smplx_model")
    write_synthetic_smplx_model(folder)
    return folder


@pytest.fixture(scope="module")
def smplx_model(smplx_dir):
    return load_body_model("smplx", model_path=str(smplx_dir))


def random_params(model, n: int, seed: int = 0, scale: float = 0.4) -> BodyParams:
    rng = np.random.default_rng(seed)
    return BodyParams(rng.normal(0, scale, (n, 3)), rng.normal(0, scale, (n, 21, 3)),
                      model.sample_shape(rng, n), rng.normal(0, 1, (n, 3)))


# ------------------------------------------------------------------------------------ anny
def test_anny_forward_shapes(anny_model):
    m = anny_model
    out = m.forward(random_params(m, 3))
    v = m.num_vertices
    assert m.name == "anny" and m.shape_names == (
        "gender", "age", "muscle", "weight", "height", "proportions")
    assert out.vertices.shape == (3, v, 3) and out.vertices.dtype == np.float32
    assert out.joints.shape == (3, 22, 3) and out.joints.dtype == np.float32
    assert out.coco17.shape == (3, 17, 3) and out.coco17.dtype == np.float32
    assert np.isfinite(out.vertices).all()
    assert m.faces.dtype == np.int32 and m.faces.shape[1] == 3
    assert m.faces.min() == 0 and m.faces.max() == v - 1
    assert m.vertex_parts.shape == (v,) and m.vertex_parts.dtype == np.int64


def test_anny_deterministic(anny_model):
    m = anny_model
    p = random_params(m, 4, seed=3)
    a, b = m.forward(p), m.forward(p)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.coco17, b.coco17)
    s1 = m.sample_shape(np.random.default_rng(7), 5)
    np.testing.assert_array_equal(s1, m.sample_shape(np.random.default_rng(7), 5))
    assert not np.allclose(s1, m.sample_shape(np.random.default_rng(8), 5))


def test_anny_tpose_arms_horizontal(anny_model):
    m = anny_model
    shapes = np.vstack([m.neutral_shape(), m.sample_shape(np.random.default_rng(1), 3)])
    j = posed(m, shape=shapes).joints
    for side, axis in (("left", [1, 0, 0]), ("right", [-1, 0, 0])):
        upper = j[:, J[f"{side}_elbow"]] - j[:, J[f"{side}_shoulder"]]
        fore = j[:, J[f"{side}_wrist"]] - j[:, J[f"{side}_elbow"]]
        assert (angle_deg(upper, np.array(axis)) < 2).all(), side  # anny's A-pose compensated
        assert (angle_deg(fore, np.array(axis)) < 2).all(), side


def test_anny_frame_and_height(anny_model):
    m = anny_model
    out = posed(m, transl=np.array([[0.5, 1.0, -2.0]]))
    j, k, v = out.joints[0], out.coco17[0], out.vertices[0]
    np.testing.assert_allclose(j[J["pelvis"]], [0.5, 1.0, -2.0], atol=1e-6)  # pelvis at transl
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.0 < height < 2.1
    assert k[K["nose"]][2] > j[J["pelvis"]][2] + 0.05          # faces +z
    assert k[K["nose"]][1] > j[J["pelvis"]][1] + 0.5           # y up
    assert j[J["head"]][1] > j[J["left_ankle"]][1] + 1.0
    assert k[K["left_shoulder"]][0] > k[K["right_shoulder"]][0] + 0.2  # left is +x
    assert j[J["left_hip"]][0] > j[J["pelvis"]][0] > j[J["right_hip"]][0]


def test_anny_elbow_flexion_hand_computed(anny_model):
    """Left elbow -90 deg about y: the straight T-pose forearm (+x) must point forward (+z)."""
    m = anny_model
    rest = posed(m)
    bp = np.zeros((1, 21, 3))
    bp[0, BP["left_elbow"]] = [0.0, -np.pi / 2, 0.0]
    out = posed(m, body_pose=bp)
    el, wr = rest.joints[0, J["left_elbow"]], rest.joints[0, J["left_wrist"]]
    expected = el + rot_y(-np.pi / 2) @ (wr - el)
    np.testing.assert_allclose(out.joints[0, J["left_wrist"]], expected, atol=2e-4)
    assert out.joints[0, J["left_wrist"]][2] - el[2] > 0.2      # moved forward
    np.testing.assert_allclose(out.joints[0, J["right_wrist"]], rest.joints[0, J["right_wrist"]],
                               atol=1e-6)
    moved = np.linalg.norm(out.vertices[0] - rest.vertices[0], axis=1) > 1e-4
    right_hand = m.vertex_parts == BODY_PARTS.index("right_hand")
    left_hand = m.vertex_parts == BODY_PARTS.index("left_hand")
    assert not moved[right_hand].any() and moved[left_hand].all()
    assert np.linalg.norm(out.coco17[0, K["left_wrist"]] - rest.coco17[0, K["left_wrist"]]) > 0.2


def test_anny_global_orient_rotates_about_pelvis(anny_model):
    m = anny_model
    rest = posed(m)
    out = posed(m, global_orient=np.array([[0.0, np.pi, 0.0]]))
    np.testing.assert_allclose(out.joints[0], rest.joints[0] @ rot_y(np.pi).T, atol=1e-5)
    assert out.coco17[0, K["nose"], 2] < 0  # now faces -z


def test_anny_vertex_parts(anny_model):
    m = anny_model
    parts = m.vertex_parts
    assert set(np.unique(parts)) == set(range(1, len(BODY_PARTS)))  # all 14, no background
    v = posed(m).vertices[0]
    assert v[parts == BODY_PARTS.index("left_hand"), 0].mean() > 0.6
    assert v[parts == BODY_PARTS.index("right_hand"), 0].mean() < -0.6
    assert v[parts == BODY_PARTS.index("head"), 1].mean() > 0.5
    assert v[parts == BODY_PARTS.index("left_foot"), 1].mean() < -0.8


def test_anny_sample_shape_population(anny_model):
    m = anny_model
    s = m.sample_shape(np.random.default_rng(0), 500)
    assert s.shape == (500, 6) and (s >= 0).all() and (s <= 1).all()
    age, gender = s[:, 1], s[:, 0]
    assert (age < m.age_from_years(12)).mean() > 0.05     # children
    assert (age > m.age_from_years(65)).mean() > 0.05     # elderly
    assert (gender < 0.3).mean() > 0.15 and (gender > 0.7).mean() > 0.15
    assert s[:, 3].std() > 0.1 and s[:, 2].std() > 0.1    # weight and muscle vary
    child = m.neutral_shape()
    child[1] = m.age_from_years(6)
    heights = [np.ptp(posed(m, shape=sh[None]).vertices[0, :, 1])
               for sh in (child, m.neutral_shape())]
    assert heights[0] < heights[1] - 0.4


def test_anny_rejects_out_of_range_phenotype(anny_model):
    shape = anny_model.neutral_shape()[None].copy()
    shape[0, 4] = 1.5
    with pytest.raises(BodyModelError, match=r"shape\[0, 4\] \(height\).*\[0, 1\]"):
        posed(anny_model, shape=shape)


def test_anny_content_hash(anny_model):
    h = anny_model.content_hash
    assert re.fullmatch(r"anny-[\w.]+:[0-9a-f]{64}", h)
    assert anny_model.content_hash == h


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("field", ["global_orient", "body_pose", "shape", "transl"])
def test_non_finite_params_name_param_and_sample(anny_model, field):
    p = random_params(anny_model, 4, seed=2)
    arr = np.array(getattr(p, field), dtype=np.float64)
    arr[2].flat[1] = np.nan if field != "transl" else np.inf
    arr[3].flat[0] = np.nan
    bad = BodyParams(**{**p.__dict__, field: arr})
    with pytest.raises(BodyModelError, match=rf"BodyParams\.{field} .*first bad sample index 2 "):
        anny_model.forward(bad)


def test_wrong_shapes_and_flat_body_pose(anny_model):
    m = anny_model
    p = random_params(m, 2, seed=4)
    with pytest.raises(BodyModelError, match=r"body_pose must be \(B, 21, 3\)"):
        m.forward(BodyParams(p.global_orient, p.body_pose[:, :20], p.shape, p.transl))
    with pytest.raises(BodyModelError, match=r"shape must be \(B, 6\)"):
        m.forward(BodyParams(p.global_orient, p.body_pose, p.shape[:, :5], p.transl))
    with pytest.raises(BodyModelError, match=r"transl must be \(B, 3\)"):
        m.forward(BodyParams(p.global_orient, p.body_pose, p.shape, p.transl[:1]))
    flat = m.forward(BodyParams(p.global_orient, p.body_pose.reshape(2, 63), p.shape, p.transl))
    np.testing.assert_array_equal(flat.joints, m.forward(p).joints)


def test_loader_cache_and_unknown_kind(anny_model):
    assert load_body_model("anny") is anny_model
    with pytest.raises(BodyModelError, match="unknown body_model.kind 'smpl'"):
        load_body_model("smpl")


# ----------------------------------------------------------------------------------- smplx
def test_smplx_missing_file_says_how_to_fix(tmp_path):
    for path in (str(tmp_path / "nowhere"), None):
        with pytest.raises(BodyModelError) as err:
            load_body_model("smplx", model_path=path)
        msg = str(err.value)
        assert msg.startswith("SMPL-X model file not found at" if path else "SMPL-X is selected but no model path")
        assert "None" not in msg
        assert "PD_SMPLX_MODEL_PATH" in msg and "body_model.model_path" in msg and "SMPLX_NEUTRAL.npz" in msg
        assert "PD_BODY_MODEL=anny" in msg


def test_smplx_synthetic_loads_and_forward(smplx_model, smplx_dir):
    m = smplx_model
    assert m.name == "smplx" and len(m.shape_names) == 10 and m.num_vertices == 10475
    out = m.forward(random_params(m, 3))
    assert out.vertices.shape == (3, 10475, 3) and out.vertices.dtype == np.float32
    assert out.joints.shape == (3, 22, 3) and out.coco17.shape == (3, 17, 3)
    assert m.faces.dtype == np.int32 and m.faces.max() < 10475
    assert set(np.unique(m.vertex_parts)) == set(range(1, len(BODY_PARTS)))
    assert re.fullmatch(r"smplx-neutral:[0-9a-f]{64}", m.content_hash)
    # the folder, the file itself and the folder/smplx layout all resolve to one file
    by_file = load_body_model("smplx", model_path=str(smplx_dir / "SMPLX_NEUTRAL.npz"))
    assert by_file.num_vertices == 10475


def test_smplx_rest_joints_and_transl(smplx_model):
    j = smplx_joints()[:22]
    out = posed(smplx_model, transl=np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(out.joints[0], j - j[0] + [1.0, 2.0, 3.0], atol=1e-5)


def test_smplx_known_rotation_moves_expected_joint(smplx_model):
    """Left elbow -90 deg about y: wrist offset (0.25, 0, 0.01) -> (-0.01, 0, 0.25)."""
    bp = np.zeros((1, 21, 3))
    bp[0, BP["left_elbow"]] = [0.0, -np.pi / 2, 0.0]
    rest, out = posed(smplx_model), posed(smplx_model, body_pose=bp)
    np.testing.assert_allclose(out.joints[0, J["left_wrist"]] - out.joints[0, J["left_elbow"]],
                               [-0.01, 0.0, 0.25], atol=1e-5)
    np.testing.assert_allclose(out.joints[0, J["right_wrist"]], rest.joints[0, J["right_wrist"]],
                               atol=1e-6)
    np.testing.assert_allclose(out.coco17[0, K["left_wrist"]], out.joints[0, J["left_wrist"]])


def test_smplx_face_keypoints_from_vertex_ids(smplx_model):
    out = posed(smplx_model)
    np.testing.assert_array_equal(out.coco17[0, K["nose"]], out.vertices[0, 9120])
    np.testing.assert_array_equal(out.coco17[0, K["left_ear"]], out.vertices[0, 6])
    k, j = out.coco17[0], out.joints[0]
    assert k[K["nose"], 2] > j[J["head"], 2] + 0.05
    assert k[K["left_eye"], 0] > 0 > k[K["right_eye"], 0]
    assert k[K["left_ear"], 0] > k[K["left_eye"], 0]


def test_models_agree_on_pose_meaning(anny_model, smplx_model):
    """A pose rotates each limb of both models alike: the angle between the two models' limb
    directions stays what it is in the T-pose (exactly, if the rotations agree), and that rest
    difference is small."""
    rng = np.random.default_rng(5)
    bp, go = rng.normal(0, 0.5, (6, 21, 3)), rng.normal(0, 0.5, (6, 3))
    a, s = posed(anny_model, bp, go, n=6), posed(smplx_model, bp, go, n=6)
    a0, s0 = posed(anny_model), posed(smplx_model)
    for parent, child in (("left_shoulder", "left_elbow"), ("right_elbow", "right_wrist"),
                          ("left_hip", "left_knee"), ("right_knee", "right_ankle"),
                          ("neck", "head"), ("pelvis", "spine1"), ("left_ankle", "left_foot")):
        def limb(out):
            return out.joints[:, J[child]] - out.joints[:, J[parent]]
        rest_angle = angle_deg(limb(a0), limb(s0))[0]
        assert rest_angle < 12, (parent, child, rest_angle)
        np.testing.assert_allclose(angle_deg(limb(a), limb(s)), rest_angle, atol=0.2,
                                   err_msg=f"{parent}->{child}")


# ------------------------------------------------------------------- smplx: nothing unpickles
PKL_MESSAGE = ("SMPL-X .pkl files need pickle, which this project never loads: use the .npz "
               "release of the model (SMPLX_NEUTRAL.npz)")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling while this is active fails the test (and the load that tried it)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    return calls


def test_smplx_object_metadata_skipped_same_vertices(tmp_path, smplx_model, smplx_cache):
    path = write_synthetic_smplx_model(tmp_path / "official", with_metadata=True)
    with np.load(path, allow_pickle=False) as npz:  # the fixture really holds pickled members
        assert {"joint2num", "part2num"} <= set(npz.files)
        with pytest.raises(ValueError, match="allow_pickle"):
            npz["joint2num"]
    m = SmplxBodyModel(path)
    p = random_params(m, 3, seed=11)
    np.testing.assert_array_equal(m.forward(p).vertices, smplx_model.forward(p).vertices)
    np.testing.assert_array_equal(m.faces, smplx_model.faces)
    # smplx got a numeric-only copy, cached under the original's sha256 ...
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    copy = smplx_cache / "smplx" / f"{digest}.npz"
    with np.load(copy, allow_pickle=False) as npz:
        assert set(npz.files) == set(build_synthetic_smplx())
        assert all(npz[k].dtype != object for k in npz.files)
    # ... but the recorded hash is the user's original file
    assert m.content_hash == f"smplx-neutral:{sha256_files([path])}"
    assert m.content_hash != smplx_model.content_hash


def test_smplx_pkl_refused(tmp_path, no_unpickling):
    pkl = tmp_path / "SMPLX_NEUTRAL.pkl"
    pkl.write_bytes(pickle.dumps(build_synthetic_smplx()))
    for model_path in (pkl, tmp_path):  # the file itself, or the only model in the folder
        with pytest.raises(BodyModelError) as err:
            load_body_model("smplx", model_path=str(model_path))
        assert PKL_MESSAGE in str(err.value)
    (tmp_path / "smplx").mkdir()
    (tmp_path / "smplx" / "SMPLX_NEUTRAL.pkl").write_bytes(pkl.read_bytes())
    pkl.unlink()
    with pytest.raises(BodyModelError, match=re.escape(PKL_MESSAGE)):
        SmplxBodyModel(tmp_path)
    # where both exist the .npz is the one used
    write_synthetic_smplx_model(tmp_path / "smplx")
    assert SmplxBodyModel(tmp_path).path == tmp_path / "smplx" / "SMPLX_NEUTRAL.npz"
    assert not no_unpickling


@pytest.mark.parametrize("key", ["shapedirs", "J_regressor", "lmk_faces_idx", "hands_meanl"])
def test_smplx_missing_required_key_named(tmp_path, key):
    assert key in REQUIRED_SMPLX_KEYS
    path = write_synthetic_smplx_model(tmp_path, drop=(key,))
    with pytest.raises(BodyModelError, match=rf"lacks the required key '{key}'"):
        SmplxBodyModel(path)


def test_smplx_required_key_as_objects_named(tmp_path):
    arrays = build_synthetic_smplx()
    arrays["weights"] = np.array({"not": "numbers"}, dtype=object)
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **arrays)
    with pytest.raises(BodyModelError, match=r"required key 'weights' is stored as Python "
                                             r"objects, which needs pickle"):
        SmplxBodyModel(path)


def test_smplx_loads_without_any_unpickling(tmp_path, monkeypatch, smplx_model):
    monkeypatch.setenv("PD_CACHE_DIR", str(tmp_path / "fresh_cache"))
    path = write_synthetic_smplx_model(tmp_path / "model", with_metadata=True)
    with pytest.MonkeyPatch.context() as mp:
        calls = []

        def refuse(*args, **kwargs):
            calls.append(args)
            raise AssertionError("something tried to unpickle")

        for name in ("load", "loads", "Unpickler"):
            mp.setattr(pickle, name, refuse)
        first = SmplxBodyModel(path)    # sanitises and writes the cached copy
        again = SmplxBodyModel(path)    # reuses the cached copy
        # a pickle renamed .npz is refused, not unpickled
        disguised = tmp_path / "disguised" / "SMPLX_NEUTRAL.npz"
        disguised.parent.mkdir()
        disguised.write_bytes(pickle.dumps(build_synthetic_smplx()))
        with pytest.raises(BodyModelError, match="without pickle"):
            SmplxBodyModel(disguised)
    assert not calls
    p = random_params(first, 2, seed=5)
    np.testing.assert_array_equal(first.forward(p).vertices, smplx_model.forward(p).vertices)
    np.testing.assert_array_equal(again.forward(p).vertices, smplx_model.forward(p).vertices)
    # the patch works: the same patch does make the unsanitised file fail in smplx itself
    import smplx
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pickle, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pkl")))
        with pytest.raises(AssertionError, match="pkl"):
            smplx.SMPLX(str(path), use_pca=False, ext="npz")


def test_smplx_unwritable_cache_falls_back_to_scratch(tmp_path, monkeypatch, smplx_model):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PD_CACHE_DIR", str(blocker))
    m = SmplxBodyModel(write_synthetic_smplx_model(tmp_path / "model", with_metadata=True))
    p = random_params(m, 1, seed=2)
    np.testing.assert_array_equal(m.forward(p).vertices, smplx_model.forward(p).vertices)


def test_anny_hair_covers_the_back_of_the_head_and_leaves_the_face_bare(anny_model):
    from pd_assets.poses.pool import canonical_a_pose
    from pd_assets.poses.render import hair_vertices

    canonical = anny_model.forward(BodyParams(
        global_orient=np.zeros((1, 3)), body_pose=canonical_a_pose()[None],
        shape=anny_model.neutral_shape()[None], transl=np.zeros((1, 3)))).vertices[0]
    hair = hair_vertices(canonical, anny_model.vertex_parts)
    head = np.flatnonzero(anny_model.vertex_parts == BODY_PARTS.index("head"))
    assert not hair[np.setdiff1d(np.arange(len(hair)), head)].any()
    # The SMPL frame faces +z: the nose tip is the head's most forward vertex.
    assert not hair[head[np.argmax(canonical[head, 2])]]
    assert hair[head[np.argmax(canonical[head, 1])]]  # the crown
    assert hair[head[np.argmin(canonical[head, 2])]]  # the back of the skull
    assert 0.15 < hair[head].mean() < 0.5  # the head part includes the neck and the face
