"""Build the mediapipe Pose Landmarker `.task` bundle from the mediapipe 0.10.21 wheel.

mediapipe wheels >= 0.10.30 ship no model files. The 0.10.21 wheel (Apache-2.0) holds
BlazePose-full (`pose_detection.tflite`, `pose_landmark_full.tflite`) and the selfie
segmenter. A Pose Landmarker `.task` is an uncompressed, 4-byte-aligned zip of
`pose_detector.tflite` + `pose_landmarks_detector.tflite`; the landmark model first
needs image-input normalisation metadata (mean 0, std 255), which the installed
mediapipe's metadata writer adds (see docs/environment.md).

CLI (what `make setup` runs)::

    python -m pd_assets.curation.mediapipe_task --out DIR [--wheel PATH]

Idempotent: existing outputs are kept unless `--force`. Outputs are byte-reproducible
(fixed zip timestamps), written atomically.
"""

from __future__ import annotations

import argparse
import gc
import io
import subprocess
import sys
import types
import zipfile
from pathlib import Path

from pd_assets.storage import atomic_write_bytes

MEDIAPIPE_WHEEL_VERSION = "0.10.21"
TASK_FILENAME = "pose_landmarker_full.task"
SEGMENTER_FILENAME = "selfie_segmentation.tflite"
WHEEL_MEMBERS = {
    "detector": "mediapipe/modules/pose_detection/pose_detection.tflite",
    "landmarks": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "segmenter": "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ALIGNMENT = 4


class MediapipeTaskError(RuntimeError):
    """The wheel could not be fetched or does not hold the expected model files."""


def _install_metadata_version_stub() -> None:
    """The >= 0.10.30 wheels lack `_pywrap_metadata_version`, which only stamps a minimum
    parser version; register a stand-in before importing the metadata writer."""
    base = "mediapipe.tasks.cc.metadata.python"
    try:
        __import__(f"{base}._pywrap_metadata_version")
        return
    except ImportError:
        pass
    for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", base):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = []
            sys.modules[name] = pkg
    stub = types.ModuleType(f"{base}._pywrap_metadata_version")
    stub.GetMinimumMetadataParserVersion = lambda *args, **kwargs: "1.5.0"
    sys.modules[stub.__name__] = stub
    sys.modules[base]._pywrap_metadata_version = stub


def add_landmark_metadata(model: bytes) -> bytes:
    """Return the landmark model with image-input normalisation metadata (mean 0, std 255)."""
    _install_metadata_version_stub()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils

    buf = bytearray(model)
    writer = metadata_writer.MetadataWriter.create(buf)
    writer.add_general_info("BlazePose GHUM 3D full", "Pose landmarks (33) from mediapipe 0.10.21")
    writer.add_image_input(norm_mean=[0.0], norm_std=[255.0])
    for _ in writer_utils.get_output_tensor_types(buf):
        writer.add_feature_output()
    populated, _json = writer.populate()
    del writer  # its __del__ removes a temp dir; run it now, not at interpreter exit
    gc.collect()
    return bytes(populated)


def _aligned_stored_zip(members: dict[str, bytes]) -> bytes:
    """An uncompressed zip whose members start on 4-byte boundaries (mmap-able), fixed dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            header_len = 30 + len(name.encode("utf-8"))  # fixed local header + name
            pad = (-(out.tell() + header_len)) % _ALIGNMENT
            # Padding goes into the local header's extra field so offsets stay valid.
            info.extra = b"" if pad == 0 else _padding_extra(pad)
            zf.writestr(info, data)
    return out.getvalue()


def _padding_extra(pad: int) -> bytes:
    # An extra field needs 4 bytes of header; pad to the next multiple that fits.
    while pad < 4:
        pad += _ALIGNMENT
    return (0xD935).to_bytes(2, "little") + (pad - 4).to_bytes(2, "little") + b"\x00" * (pad - 4)


def build_task_bytes(detector: bytes, landmarks: bytes) -> bytes:
    return _aligned_stored_zip({
        "pose_detector.tflite": detector,
        "pose_landmarks_detector.tflite": add_landmark_metadata(landmarks),
    })


def download_wheel(cache: Path) -> Path:
    """`pip download --no-deps mediapipe==0.10.21` (cp311, manylinux x86_64) into `cache`."""
    existing = sorted(cache.glob(f"mediapipe-{MEDIAPIPE_WHEEL_VERSION}-*.whl"))
    if existing:
        return existing[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", f"mediapipe=={MEDIAPIPE_WHEEL_VERSION}",
        "--python-version", "311", "--platform", "manylinux_2_28_x86_64", "--only-binary=:all:",
        "-d", str(cache),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob(f"mediapipe-{MEDIAPIPE_WHEEL_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        raise MediapipeTaskError(
            f"could not download mediapipe=={MEDIAPIPE_WHEEL_VERSION} from PyPI into {cache} "
            f"({proc.stderr.strip()[-400:]}): download the wheel by hand and pass --wheel PATH"
        )
    return found[0]


def read_wheel_models(wheel: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return {key: zf.read(member) for key, member in WHEEL_MEMBERS.items()}
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        raise MediapipeTaskError(
            f"{wheel} is not a mediapipe {MEDIAPIPE_WHEEL_VERSION} wheel with the pose models "
            f"({exc}): pass the cp311 manylinux wheel of mediapipe=={MEDIAPIPE_WHEEL_VERSION}"
        ) from exc


def build(out_dir: Path, wheel: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Write the `.task` bundle and the selfie segmenter into `out_dir`; skip what exists."""
    out_dir = Path(out_dir)
    targets = {"task": out_dir / TASK_FILENAME, "segmenter": out_dir / SEGMENTER_FILENAME}
    if not force and all(p.is_file() and p.stat().st_size > 0 for p in targets.values()):
        return targets
    if wheel is None:
        wheel = download_wheel(out_dir / "wheels")
    models = read_wheel_models(Path(wheel))
    atomic_write_bytes(targets["task"], build_task_bytes(models["detector"], models["landmarks"]))
    atomic_write_bytes(targets["segmenter"], models["segmenter"])
    return targets


def main(argv: list[str] | None = None) -> int:
    from resources.paths import models_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: models_dir())")
    parser.add_argument("--wheel", type=Path, default=None, help="a local mediapipe 0.10.21 wheel")
    parser.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")
    args = parser.parse_args(argv)
    out = args.out or models_dir()
    paths = build(out, wheel=args.wheel, force=args.force)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
