#!/usr/bin/env python3
"""Reference detector for the tests: the same models decoded with onnxruntime and numpy.

The Rust detector must agree with this script on the same frame (same count, IoU > 0.9,
scores within 1e-3). It is written independently of the Rust code, from the models'
published output conventions, and uses only onnxruntime, numpy and (for CenterFace's
fixed input shape) the onnx package.

Input is a raw RGB file (row-major, 3 bytes per pixel) so both sides see identical pixels;
the output is a JSON list of detections in frame pixels on stdout.

    reference_detect.py --model m.onnx --kind yolov8 --rgb frame.rgb --width 810 --height 1080
"""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


def round_half_up(x):
    # Rust's f32::round rounds halves away from zero; Python's round() would not.
    return int(np.floor(x + 0.5))


def bilinear(img, new_w, new_h):
    """Resizes HxWx3 uint8 to new_h x new_w x 3 float32, pixel centres at +0.5."""
    h, w = img.shape[:2]

    def taps(n_out, n_in):
        s = (np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(n_in / n_out) - 0.5
        s = np.maximum(s, 0)
        a = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
        b = np.minimum(a + 1, n_in - 1)
        wgt = np.where(a == n_in - 1, 0.0, s - a).astype(np.float32)
        return a, b, wgt

    xa, xb, wx = taps(new_w, w)
    ya, yb, wy = taps(new_h, h)
    src = img.astype(np.float32)
    top = src[ya][:, xa] * (1 - wx)[None, :, None] + src[ya][:, xb] * wx[None, :, None]
    bottom = src[yb][:, xa] * (1 - wx)[None, :, None] + src[yb][:, xb] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def nms(boxes, scores, classes, iou_threshold, limit):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        if len(keep) == limit:
            break
        suppressed = False
        for k in keep:
            if classes[k] != classes[i]:
                continue
            xx1 = max(boxes[i, 0], boxes[k, 0])
            yy1 = max(boxes[i, 1], boxes[k, 1])
            xx2 = min(boxes[i, 2], boxes[k, 2])
            yy2 = min(boxes[i, 3], boxes[k, 3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_k = (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])
            union = area_i + area_k - inter
            if union > 0 and inter / union > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return keep


def yolo(args, img):
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    size_w, size_h = args.input_size
    h, w = img.shape[:2]
    r = min(size_w / w, size_h / h)
    new_w = min(max(round_half_up(w * r), 1), size_w)
    new_h = min(max(round_half_up(h * r), 1), size_h)
    left = max(round_half_up((size_w - new_w) / 2 - 0.1), 0)
    top = max(round_half_up((size_h - new_h) / 2 - 0.1), 0)
    canvas = np.full((size_h, size_w, 3), 114.0, dtype=np.float32)
    canvas[top:top + new_h, left:left + new_w] = bilinear(img, new_w, new_h)
    blob = (canvas / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
    out = session.run(None, {session.get_inputs()[0].name: blob})[0][0]
    if args.kind == "yolov8":
        rows = out.T if out.shape[0] < out.shape[1] else out  # -> N x (4 + classes)
        class_scores = rows[:, 4:]
        objectness = np.ones(len(rows), dtype=np.float32)
    else:
        rows = out if out.shape[0] > out.shape[1] else out.T
        class_scores = rows[:, 5:]
        objectness = rows[:, 4]
    best = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), best] * objectness
    mask = (scores >= args.confidence) & (objectness >= args.confidence)
    rows, best, scores = rows[mask], best[mask], scores[mask]
    boxes = np.stack([
        rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2,
        rows[:, 0] + rows[:, 2] / 2, rows[:, 1] + rows[:, 3] / 2,
    ], axis=1)
    keep = nms(boxes, scores, best, args.iou, args.max_det)
    sx, sy = new_w / w, new_h / h
    results = []
    for i in keep:
        x1, y1, x2, y2 = boxes[i]
        results.append({
            "class_id": int(best[i]),
            "confidence": float(scores[i]),
            "bbox": [
                float(np.clip((x1 - left) / sx, 0, w)), float(np.clip((y1 - top) / sy, 0, h)),
                float(np.clip((x2 - left) / sx, 0, w)), float(np.clip((y2 - top) / sy, 0, h)),
            ],
        })
    return results


def centerface(args, img):
    import onnx

    model = onnx.load(args.model)
    weights = {init.name for init in model.graph.initializer}
    for value, names in [(v, ("batch", "height", "width")) for v in model.graph.input if v.name not in weights] + \
                        [(v, ("batch", "out_height", "out_width")) for v in model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for position, name in zip((0, 2, 3), names):
                dims[position].ClearField("dim_value")
                dims[position].dim_param = name
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    h, w = img.shape[:2]
    in_w = -(-w // 32) * 32 if args.input_size is None else args.input_size[0]
    in_h = -(-h // 32) * 32 if args.input_size is None else args.input_size[1]
    blob = bilinear(img, in_w, in_h).transpose(2, 0, 1)[None].astype(np.float32)
    heatmap, scale, offset, landmarks = session.run(None, {session.get_inputs()[0].name: blob})
    heat = heatmap[0, 0]
    rows, cols = np.where(heat > args.confidence)
    boxes, scores, points = [], [], []
    for r, c in zip(rows, cols):
        bh = np.exp(scale[0, 0, r, c]) * 4
        bw = np.exp(scale[0, 1, r, c]) * 4
        x1 = min(max((c + offset[0, 1, r, c] + 0.5) * 4 - bw / 2, 0), in_w)
        y1 = min(max((r + offset[0, 0, r, c] + 0.5) * 4 - bh / 2, 0), in_h)
        boxes.append([x1, y1, min(x1 + bw, in_w), min(y1 + bh, in_h)])
        scores.append(heat[r, c])
        points.append([(landmarks[0, 2 * j + 1, r, c] * bw + x1, landmarks[0, 2 * j, r, c] * bh + y1)
                       for j in range(5)])
    if not boxes:
        return []
    boxes = np.array(boxes, dtype=np.float32)
    scores = np.array(scores, dtype=np.float32)
    keep = nms(boxes, scores, np.zeros(len(scores), dtype=np.int64), args.iou, args.max_det)
    sx, sy = in_w / w, in_h / h
    return [{
        "class_id": 0,
        "confidence": float(scores[i]),
        "bbox": [float(np.clip(boxes[i, 0] / sx, 0, w)), float(np.clip(boxes[i, 1] / sy, 0, h)),
                 float(np.clip(boxes[i, 2] / sx, 0, w)), float(np.clip(boxes[i, 3] / sy, 0, h))],
        "landmarks": [[float(x / sx), float(y / sy)] for x, y in points[i]],
    } for i in keep]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--kind", required=True, choices=["yolov8", "yolov5", "centerface"])
    p.add_argument("--rgb", required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("W", "H"))
    p.add_argument("--confidence", type=float)
    p.add_argument("--iou", type=float)
    p.add_argument("--max-det", type=int, default=300)
    args = p.parse_args()
    img = np.fromfile(args.rgb, dtype=np.uint8).reshape(args.height, args.width, 3)
    if args.kind == "centerface":
        args.confidence = 0.5 if args.confidence is None else args.confidence
        args.iou = 0.3 if args.iou is None else args.iou
        results = centerface(args, img)
    else:
        args.confidence = 0.25 if args.confidence is None else args.confidence
        args.iou = 0.45 if args.iou is None else args.iou
        if args.input_size is None:
            args.input_size = (640, 640)
        results = yolo(args, img)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
