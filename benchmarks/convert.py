r"""Conversion throughput of ``seqflows convert`` on synthetic files in the original formats.

BAIR: ``--bair-files`` TFRecord files of ``--bair-records`` trajectories of 30 RGB 64x64 frames
with the real feature keys (raw image bytes, actions, end-effector positions), in the
softmotion30_44k layout. KTH: ``--kth-videos`` lossless AVIs of ``--kth-frames`` frames at
160x120 with KTH names and a ``00sequences.txt`` of four sub-sequences each. The files are made
in a temporary folder, then converted with 1 and 2 worker processes; the script prints and
optionally writes trajectories (sequences) per second, which is what the real datasets'
conversion time scales with (43,520 BAIR trajectories; 599 KTH videos).

    python benchmarks/convert.py --json benchmarks/results/convert.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from seqflows.data import convert_bair, convert_kth
from seqflows.data.tfrecord import encode_example, write_records


def make_bair(root: Path, files: int, records: int) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", files), ("test", 1)):
        folder = root / "softmotion30_44k" / split
        folder.mkdir(parents=True)
        for index in range(count):
            payloads = []
            for _ in range(records):
                features: dict[str, Any] = {}
                for t in range(30):
                    image = rng.integers(0, 256, 64 * 64 * 3, dtype=np.uint8)
                    features[f"{t}/image_aux1/encoded"] = [image.tobytes()]
                    features[f"{t}/action"] = rng.normal(size=4).astype(np.float32)
                    features[f"{t}/endeffector_pos"] = rng.normal(size=3).astype(np.float32)
                payloads.append(encode_example(features))
            first = index * records
            write_records(folder / f"traj_{first}_to_{first + records - 1}.tfrecords", payloads)
    return root


def make_kth(root: Path, videos: int, frames: int) -> Path:
    import av

    rng = np.random.default_rng(0)
    lines = []
    for index in range(videos):
        person = 11 + index % 8  # the reference's training persons
        stem = f"person{person:02d}_boxing_d{1 + index // 8}_uncomp"
        base = rng.integers(0, 256, (120, 160))
        with av.open(str(root / f"{stem}.avi"), "w") as container:
            stream = container.add_stream("ffv1", rate=25)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "bgr0"
            for t in range(frames):
                gray = ((base + 3 * t) % 256).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, 2), "rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        quarter = frames // 4
        ranges = ", ".join(f"{1 + k * quarter}-{(k + 1) * quarter}" for k in range(4))
        lines.append(f"{stem.removesuffix('_uncomp')}\t\tframes\t{ranges}")
    (root / "00sequences.txt").write_text("\n".join(lines) + "\n")
    return root


def timed(convert: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    summary = convert(*args, **kwargs)
    return summary, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bair-files", type=int, default=2)
    parser.add_argument("--bair-records", type=int, default=64)
    parser.add_argument("--kth-videos", type=int, default=8)
    parser.add_argument("--kth-frames", type=int, default=200)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bair = make_bair(root / "bair_src", args.bair_files, args.bair_records)
        (root / "kth_src").mkdir()
        kth = make_kth(root / "kth_src", args.kth_videos, args.kth_frames)
        for workers in (1, 2):
            summary, seconds = timed(
                convert_bair, bair, root / f"bair_{workers}", validation=0, workers=workers
            )
            count = sum(split["sequences"] for split in summary.values())
            results.append(
                {
                    "dataset": "bair",
                    "workers": workers,
                    "sequences": count,
                    "seconds": seconds,
                    "sequences_per_second": count / seconds,
                }
            )
            summary, seconds = timed(convert_kth, kth, root / f"kth_{workers}", workers=workers)
            count = sum(split["sequences"] for split in summary.values())
            results.append(
                {
                    "dataset": "kth",
                    "workers": workers,
                    "videos": args.kth_videos,
                    "sequences": count,
                    "seconds": seconds,
                    "sequences_per_second": count / seconds,
                    "videos_per_second": args.kth_videos / seconds,
                    "frames_per_video": args.kth_frames,
                }
            )
    for row in results:
        print(
            f"{row['dataset']:>4}, {row['workers']} worker(s): {row['sequences']} sequences in "
            f"{row['seconds']:.2f} s = {row['sequences_per_second']:.1f} sequences/s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
