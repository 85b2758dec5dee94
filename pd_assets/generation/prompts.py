"""Structured, seeded prompts (PoseDreamer stage 1 captions, no language model needed).

A prompt is assembled from a bank: a scene from one of the 7 scenario groups, person
words consistent with the body (age band, gender), an optional demographic term
(probability 0.6 in the method), clothing, lighting, camera and realism clauses, all
wrapped in one fixed quality template. The packaged bank is `prompt_bank.yaml`; a user
YAML/JSON file replaces it, or extends it with `extends: default`.

`sample_prompt` draws the same number of random values whatever the outcome, so a
prompt depends only on the generator's state (and the body's age/gender), never on the
bank's earlier choices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BANK_PATH = Path(__file__).with_name("prompt_bank.yaml")
AGE_BANDS = ("child", "teenager", "adult", "elderly")
GENDERS = ("female", "male", "neutral")
# Age band limits in years: child < 13 <= teenager < 20 <= adult < 60 <= elderly.
CHILD_MAX_AGE = 13.0
TEEN_MAX_AGE = 20.0
ELDERLY_MIN_AGE = 60.0
# gender in [0, 1]: below FEMALE_MAX female words, above MALE_MIN male words, else neutral.
FEMALE_MAX = 0.35
MALE_MIN = 0.65

_LIST_KEYS = ("demographic_terms", "clothing", "lighting", "camera", "realism")
_SCALAR_KEYS = ("version", "quality_template", "negative_prompt", "demographic_probability")
_DICT_KEYS = ("scene_groups", "person_words", "age_band_weights")
_KNOWN_KEYS = frozenset(_LIST_KEYS + _SCALAR_KEYS + _DICT_KEYS + ("extends",))


class PromptBankError(ValueError):
    """A prompt bank file is missing, unreadable or malformed; the message names the key."""


@dataclass(frozen=True)
class Prompt:
    text: str
    negative: str
    scene_group: str
    scene: str


@dataclass(frozen=True)
class PromptBank:
    quality_template: str
    negative_prompt: str
    demographic_probability: float
    demographic_terms: tuple[str, ...]
    person_words: dict[str, dict[str, tuple[str, ...]]]
    age_band_weights: dict[str, float]
    scene_groups: dict[str, tuple[str, ...]]
    clothing: tuple[str, ...]
    lighting: tuple[str, ...]
    camera: tuple[str, ...]
    realism: tuple[str, ...]
    source: str = "default"

    @property
    def num_scenes(self) -> int:
        return sum(len(v) for v in self.scene_groups.values())


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PromptBankError(
            f"prompt bank file {path} does not exist: give the path of a YAML/JSON bank, "
            "or leave it unset for the packaged bank"
        )
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: both name the line
        raise PromptBankError(f"prompt bank {path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PromptBankError(f"prompt bank {path} must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` into `base`: lists appended (no duplicates), dicts merged per key, scalars replaced."""
    out = dict(base)
    for key, value in extra.items():
        if key == "extends":
            continue
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value)
        elif key in out and isinstance(out[key], list) and isinstance(value, list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


def _strings(value: Any, where: str, src: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise PromptBankError(f"prompt bank {src}: `{where}` must be a non-empty list of strings")
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise PromptBankError(f"prompt bank {src}: `{where}` holds non-string or empty entries {bad[:3]!r}")
    return tuple(v.strip() for v in value)


def _validate(data: dict[str, Any], src: str) -> PromptBank:
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise PromptBankError(
            f"prompt bank {src}: unknown key(s) {unknown}; allowed: {sorted(_KNOWN_KEYS)}"
        )
    required = ("quality_template", "negative_prompt", "scene_groups", "person_words",
                "demographic_terms", "clothing", "lighting", "camera", "realism")
    missing = [k for k in required if k not in data]
    if missing:
        raise PromptBankError(
            f"prompt bank {src}: missing key(s) {missing}; add them or start the file with "
            "`extends: default` to inherit them from the packaged bank"
        )
    template = data["quality_template"]
    if not isinstance(template, str) or "{description}" not in template:
        raise PromptBankError(f"prompt bank {src}: `quality_template` must be a string containing '{{description}}'")
    if not isinstance(data["negative_prompt"], str):
        raise PromptBankError(f"prompt bank {src}: `negative_prompt` must be a string")
    p = data.get("demographic_probability", 0.6)
    if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise PromptBankError(f"prompt bank {src}: `demographic_probability` must be a number in [0, 1], got {p!r}")

    groups = data["scene_groups"]
    if not isinstance(groups, dict) or not groups:
        raise PromptBankError(f"prompt bank {src}: `scene_groups` must map group names to lists of scenes")
    scene_groups = {str(g): _strings(v, f"scene_groups.{g}", src) for g, v in groups.items()}

    words = data["person_words"]
    if not isinstance(words, dict) or sorted(words) != sorted(AGE_BANDS):
        raise PromptBankError(
            f"prompt bank {src}: `person_words` must have exactly the age bands {list(AGE_BANDS)}, "
            f"got {sorted(words) if isinstance(words, dict) else words!r}"
        )
    person_words: dict[str, dict[str, tuple[str, ...]]] = {}
    for band, by_gender in words.items():
        if not isinstance(by_gender, dict) or sorted(by_gender) != sorted(GENDERS):
            raise PromptBankError(
                f"prompt bank {src}: `person_words.{band}` must have exactly the keys {list(GENDERS)}"
            )
        person_words[band] = {g: _strings(by_gender[g], f"person_words.{band}.{g}", src) for g in GENDERS}

    weights = data.get("age_band_weights", {b: 1.0 for b in AGE_BANDS})
    if (not isinstance(weights, dict) or sorted(weights) != sorted(AGE_BANDS)
            or any(not isinstance(w, (int, float)) or w < 0 for w in weights.values())
            or sum(weights.values()) <= 0):
        raise PromptBankError(
            f"prompt bank {src}: `age_band_weights` must give a non-negative weight to each of "
            f"{list(AGE_BANDS)} (not all zero)"
        )
    return PromptBank(
        quality_template=template,
        negative_prompt=data["negative_prompt"].strip(),
        demographic_probability=float(p),
        demographic_terms=_strings(data["demographic_terms"], "demographic_terms", src),
        person_words=person_words,
        age_band_weights={b: float(weights[b]) for b in AGE_BANDS},
        scene_groups=scene_groups,
        clothing=_strings(data["clothing"], "clothing", src),
        lighting=_strings(data["lighting"], "lighting", src),
        camera=_strings(data["camera"], "camera", src),
        realism=_strings(data["realism"], "realism", src),
        source=src,
    )


def load_prompt_bank(path: str | Path | None = None) -> PromptBank:
    """The packaged bank (`path=None`), or a user YAML/JSON file that replaces it or,
    with `extends: default`, merges into it."""
    default = _read_file(DEFAULT_BANK_PATH)
    if path is None or str(path).strip() in ("", "default"):
        return _validate(default, "default")
    path = Path(path).expanduser()
    data = _read_file(path)
    extends = data.get("extends")
    if extends is not None and extends != "default":
        raise PromptBankError(
            f"prompt bank {path}: `extends: {extends!r}` is not supported; use `extends: default` "
            "to merge into the packaged bank, or remove the key to replace it"
        )
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:  # check before merging so the message names the user's file
        raise PromptBankError(f"prompt bank {path}: unknown key(s) {unknown}; allowed: {sorted(_KNOWN_KEYS)}")
    if extends == "default":
        data = _merge(default, data)
    return _validate(data, str(path))


def age_band(age_years: float) -> str:
    if age_years < CHILD_MAX_AGE:
        return "child"
    if age_years < TEEN_MAX_AGE:
        return "teenager"
    if age_years >= ELDERLY_MIN_AGE:
        return "elderly"
    return "adult"


def gender_word_key(gender: float) -> str:
    if gender < FEMALE_MAX:
        return "female"
    if gender > MALE_MIN:
        return "male"
    return "neutral"


def _pick(u: float, items: tuple[str, ...] | list[str]) -> str:
    """The item at uniform draw `u` in [0, 1): one draw per choice keeps the stream fixed."""
    return items[min(int(u * len(items)), len(items) - 1)]


def _with_demographic(person: str, term: str) -> str:
    """'elderly woman' + 'East Asian' -> 'elderly East Asian woman' (the term before the noun)."""
    head, _, noun = person.rpartition(" ")
    return f"{head} {term} {noun}" if head else f"{term} {noun}"


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


# how a prompt states the body's view (pd_assets/poses/view.py): right after the person, early
# enough to survive a 77-token text encoder's truncation (the from-scratch model's tokenizer
# is nearly one token a character)
VIEW_PHRASES = {"front": "facing the camera", "side": "seen from the side", "back": "seen from behind"}


def sample_prompt(
    rng: np.random.Generator,
    bank: PromptBank,
    *,
    age_years: float | None = None,
    gender: float | None = None,
    view: str | None = None,
) -> Prompt:
    """One prompt; person words follow `age_years` and `gender` (0 female .. 1 male) when given,
    and `view` ('front', 'side', 'back'; None: unstated) is stated after the person.

    Always consumes exactly 11 uniform draws from `rng`, whatever the view.
    """
    if view is not None and view not in VIEW_PHRASES:
        raise ValueError(f"view must be one of {sorted(VIEW_PHRASES)} or None, got {view!r}")
    u = rng.random(11)
    if age_years is None:
        w = np.array([bank.age_band_weights[b] for b in AGE_BANDS], dtype=np.float64)
        band = AGE_BANDS[int(np.searchsorted(np.cumsum(w / w.sum()), u[0], side="right").clip(0, 3))]
    else:
        band = age_band(float(age_years))
    if gender is None:
        gkey = _pick(u[1], GENDERS)
    else:
        gkey = gender_word_key(float(gender))
    person = _pick(u[2], bank.person_words[band][gkey])
    if u[3] < bank.demographic_probability:
        person = _with_demographic(person, _pick(u[4], bank.demographic_terms))
    group_names = sorted(bank.scene_groups)
    group = _pick(u[5], group_names)
    scene = _pick(u[6], bank.scene_groups[group])
    view_words = f" {VIEW_PHRASES[view]}" if view is not None else ""
    description = ", ".join([
        f"{_article(person)} {person}{view_words} wearing {_pick(u[7], bank.clothing)}",
        scene,
        _pick(u[8], bank.lighting),
        _pick(u[9], bank.camera),
        _pick(u[10], bank.realism),
    ])
    text = bank.quality_template.format(description=description)
    return Prompt(text=text, negative=bank.negative_prompt, scene_group=group, scene=scene)
