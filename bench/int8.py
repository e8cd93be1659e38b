"""int8 static quantisation vs the float ONNX model: latency and closeness on held-out images.

The demo architecture (untrained weights) at 640×512 is exported, then quantised by
``gazecxr.inference.quantize`` with calibration on the first 8 images of a synthetic dataset
converted at 640×512 and compared with the float model on the next 8 (ONNX Runtime, CPU, batch 8).
``ratio`` = float / int8 ms per image. Untrained weights make the closeness figures (saliency
Pearson, probability difference) a check of the pipeline, not of a trained model's accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import cpu_info, exported_demo_model, report, synthetic_h5
from gazecxr.inference.quantize import quantize_int8


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.int8", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="calibration images, as many held out (default: 8)")
    args = parser.parse_args(argv)
    info = cpu_info()
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        root = Path(tmp)
        model = exported_demo_model(root)
        h5 = synthetic_h5(root / "data", n=max(20, 2 * args.images + 4), height=640, width=512)
        result = quantize_int8(model, h5, args.images)
        print(result.describe(), flush=True)
        sizes = {"float_mb": round(model.stat().st_size / 2**20, 2),
                 "int8_mb": round(Path(result.path).stat().st_size / 2**20, 2) if result.kept else None}
    return report("int8", result.float_ms_per_image / result.int8_ms_per_image, None,
                  ratio_of="float / int8 ms per image, demo model, ONNX Runtime", **result.to_dict(), **sizes,
                  weights="untrained", not_measured=["GPU", "a trained model's accuracy after quantisation"], **info)


if __name__ == "__main__":
    main()
