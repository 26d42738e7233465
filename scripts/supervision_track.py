#!/usr/bin/env python3
"""Runs the `supervision` package's ByteTrack over detections, for comparison.

stdin:  {"fps": 30, "frames": [[{"bbox": [x1, y1, x2, y2], "confidence": 0.9}, ...], ...]}
stdout: [[frame, track_id, [x1, y1, x2, y2]], ...] for every tracked box.

The Rust test scores this output and Synopticon's own tracker on the same synthetic
scenes with the same scorer (actors/src/tracker/eval.rs).
"""
import json
import sys

import numpy as np
import supervision as sv


def main():
    scene = json.load(sys.stdin)
    tracker = sv.ByteTrack(frame_rate=int(scene["fps"]))
    out = []
    for number, boxes in enumerate(scene["frames"]):
        if boxes:
            detections = sv.Detections(
                xyxy=np.array([b["bbox"] for b in boxes], dtype=np.float32),
                confidence=np.array([b["confidence"] for b in boxes], dtype=np.float32),
                class_id=np.zeros(len(boxes), dtype=int),
            )
        else:
            detections = sv.Detections.empty()
        tracked = tracker.update_with_detections(detections)
        for xyxy, track_id in zip(tracked.xyxy, tracked.tracker_id):
            out.append([number, int(track_id), [float(v) for v in xyxy]])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
