#!/usr/bin/env python3
"""Live segmentation of a camera, video, folder or bag: the whole loop in 40 lines.

    python examples/camera_loop.py models/cifrenet_cityscapes_640x360_fp32.onnx 0
    python examples/camera_loop.py model.engine /dev/video0 --headless
    python examples/camera_loop.py model.onnx drive.bag --topic /camera/image_raw

The camera source keeps only the newest frame, so the loop never falls behind the world.
"""

import argparse
import time

import cv2

from cifrenet_edge import Segmenter
from cifrenet_edge.errors import FrameError
from cifrenet_edge.runtime.sources import open_source

ap = argparse.ArgumentParser(description="segment a live source and show the overlay")
ap.add_argument("model", help=".onnx, .engine/.plan or .pth")
ap.add_argument("source", nargs="?", default="0", help="camera index, video, folder or bag")
ap.add_argument("--topic", help="bag image topic")
ap.add_argument("--alpha", type=float, default=0.5)
ap.add_argument("--headless", action="store_true", help="print FPS instead of a window")
args = ap.parse_args()

with Segmenter.open(args.model) as seg, open_source(args.source, args.topic) as source:
    print(seg)
    for frame in source:
        if frame.image is None:  # undecodable frame: skip it, keep going
            continue
        start = time.perf_counter()
        try:
            mask = seg.predict(frame.image)
        except FrameError:
            continue
        view = seg.overlay(frame.image, mask, args.alpha)
        fps = 1.0 / (time.perf_counter() - start)
        label = f"{fps:.0f} FPS {seg.backend.name}/{seg.backend.device} dropped {source.dropped}"
        if args.headless:
            print(label)
            continue
        cv2.putText(view, label, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        cv2.imshow("cifrenet-edge", view)
        if cv2.waitKey(1) in (27, ord("q")):  # Esc or q
            break
