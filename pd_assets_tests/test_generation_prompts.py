"""Prompt bank: determinism, person words, demographic swap rate, user files and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pd_assets.generation.prompts import (
    Prompt,
    PromptBankError,
    age_band,
    gender_word_key,
    load_prompt_bank,
    sample_prompt,
)


@pytest.fixture(scope="module")
def bank():
    return load_prompt_bank()


def test_packaged_bank_has_the_methods_shape(bank):
    assert len(bank.scene_groups) == 7
    assert 190 <= bank.num_scenes <= 230
    assert len(bank.demographic_terms) == 15
    assert bank.demographic_probability == pytest.approx(0.6)
    assert "{description}" in bank.quality_template


def test_same_rng_state_same_prompt(bank):
    a = [sample_prompt(np.random.default_rng(7), bank, age_years=30, gender=0.2) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert isinstance(a[0], Prompt)
    assert a[0].scene in bank.scene_groups[a[0].scene_group]
    assert a[0].scene in a[0].text
    assert a[0].negative == bank.negative_prompt


def test_stream_consumption_is_fixed(bank):
    """The draws after a prompt do not depend on which words the prompt picked."""
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    sample_prompt(r1, bank, age_years=5, gender=0.0)
    sample_prompt(r2, bank)
    assert r1.random() == r2.random()


def test_different_states_give_varied_prompts(bank):
    rng = np.random.default_rng(0)
    texts = {sample_prompt(rng, bank).text for _ in range(200)}
    groups = {sample_prompt(rng, bank).scene_group for _ in range(200)}
    assert len(texts) > 190
    assert groups == set(bank.scene_groups)


@pytest.mark.parametrize(
    ("age", "gender", "allowed"),
    [
        (6.0, 0.0, {"girl", "little girl", "young girl"}),
        (8.0, 1.0, {"boy", "little boy", "young boy"}),
        (16.0, 0.5, {"teenager", "teen"}),
        (35.0, 0.95, {"man", "young man", "middle-aged man"}),
        (72.0, 0.05, {"elderly woman", "older woman", "senior woman"}),
    ],
)
def test_person_words_follow_the_body(bank, age, gender, allowed):
    rng = np.random.default_rng(11)
    for _ in range(30):
        text = sample_prompt(rng, bank, age_years=age, gender=gender).text
        described = text.split(" of ", 1)[1].split(" wearing ", 1)[0]
        words = described.split(" ", 1)[1]  # drop the article
        noun = words.split(" ")[-1]
        assert any(w.split(" ")[-1] == noun for w in allowed), text
        if age >= 60:
            assert words.split(" ")[0] in {"elderly", "older", "senior"}, text


def test_age_and_gender_bands():
    assert [age_band(a) for a in (3, 12.9, 13, 19.9, 20, 59.9, 60)] == [
        "child", "child", "teenager", "teenager", "adult", "adult", "elderly"]
    assert [gender_word_key(g) for g in (0.0, 0.3, 0.5, 0.7, 1.0)] == [
        "female", "female", "neutral", "male", "male"]


def test_demographic_swap_rate_is_about_0_6(bank):
    rng = np.random.default_rng(123)
    n, hits = 4000, 0
    for _ in range(n):
        text = sample_prompt(rng, bank, age_years=30, gender=1.0).text
        hits += any(f" {t} " in text for t in bank.demographic_terms)
    rate = hits / n
    assert abs(rate - 0.6) < 0.03, rate


def test_user_file_extends_default(tmp_path, bank):
    user = tmp_path / "bank.yaml"
    user.write_text(
        "extends: default\n"
        "scene_groups:\n  underwater:\n    - in a coral reef\n  urban:\n    - on a tram roof\n"
        "clothing:\n  - a wetsuit\n"
    )
    ext = load_prompt_bank(user)
    assert ext.scene_groups["underwater"] == ("in a coral reef",)
    assert ext.scene_groups["urban"][-1] == "on a tram roof"
    assert len(ext.scene_groups["urban"]) == len(bank.scene_groups["urban"]) + 1
    assert ext.clothing[-1] == "a wetsuit" and len(ext.clothing) == len(bank.clothing) + 1
    assert ext.quality_template == bank.quality_template
    rng = np.random.default_rng(0)
    assert "underwater" in {sample_prompt(rng, ext).scene_group for _ in range(300)}


def test_user_json_file_replaces_default(tmp_path, bank):
    data = {
        "quality_template": "photo: {description}",
        "negative_prompt": "blurry",
        "demographic_probability": 0.0,
        "demographic_terms": ["x"],
        "person_words": {b: {g: [f"{b}-{g}"] for g in ("female", "male", "neutral")}
                         for b in ("child", "teenager", "adult", "elderly")},
        "scene_groups": {"only": ["in a room"]},
        "clothing": ["a coat"], "lighting": ["daylight"], "camera": ["50mm"], "realism": ["raw"],
    }
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(data))
    p = sample_prompt(np.random.default_rng(0), load_prompt_bank(path), age_years=30, gender=0.0)
    assert p.text == "photo: an adult-female wearing a coat, in a room, daylight, 50mm, raw"
    assert p.negative == "blurry" and p.scene_group == "only"
    behind = sample_prompt(np.random.default_rng(0), load_prompt_bank(path), age_years=30, gender=0.0, view="back")
    assert behind.text == "photo: an adult-female seen from behind wearing a coat, in a room, daylight, 50mm, raw"


def test_view_changes_nothing_else_and_draws_nothing(bank):
    for seed in range(50):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        plain = sample_prompt(r1, bank, age_years=70, gender=0.0)
        seen = sample_prompt(r2, bank, age_years=70, gender=0.0, view="side")
        assert r1.random() == r2.random()
        assert seen.text.replace(" seen from the side", "", 1) == plain.text
    with pytest.raises(ValueError, match="view must be one of"):
        sample_prompt(np.random.default_rng(0), bank, view="above")


def test_view_survives_the_scratch_text_encoders_truncation(bank, tmp_path):
    """Every person phrase of the packaged bank, with every demographic term and view: the view
    ends within the 77 tokens (BOS + 75 + EOS) of the from-scratch model's tokenizer, which
    spends about one token a character."""
    from pd_assets.generation.prompts import VIEW_PHRASES, _article, _with_demographic
    from pd_assets.generation.tiny_models import _clip_tokenizer

    tokenizer, _ = _clip_tokenizer(tmp_path, 1000)
    lead = bank.quality_template.split("{description}")[0]
    people = {w if term is None else _with_demographic(w, term)
              for genders in bank.person_words.values() for words in genders.values() for w in words
              for term in (None, *bank.demographic_terms)}
    longest = max(len(tokenizer(f"{lead}{_article(p)} {p} {v}").input_ids) - 1  # without EOS
                  for p in people for v in VIEW_PHRASES.values())
    assert 50 < longest <= 76


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("extends: default\nscenes: [a]\n", "unknown key(s) ['scenes']"),
        ("quality_template: 'x {description}'\n", "missing key(s)"),
        ("extends: default\nquality_template: 'no placeholder'\n", "quality_template"),
        ("extends: default\ndemographic_probability: 1.5\n", "demographic_probability"),
        ("extends: default\nclothing: [1, '']\n", "clothing"),
        ("extends: other\n", "extends"),
        ("extends: default\nperson_words:\n  adult:\n    other: [x]\n", "person_words.adult"),
        ("- just\n- a list\n", "must be a mapping"),
        ("extends: default\nclothing: [unclosed\n", "not valid YAML/JSON"),
    ],
)
def test_bad_user_files_name_the_key(tmp_path, content, needle):
    path = tmp_path / "bank.yaml"
    path.write_text(content)
    with pytest.raises(PromptBankError) as err:
        load_prompt_bank(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(PromptBankError, match="does not exist"):
        load_prompt_bank(tmp_path / "nope.yaml")
