//! Inference benchmark: bare `Session::run` against the full path (pre-process + run +
//! output decoding + NMS), and the full path with JPEG decoding in front, per model at
//! its native input size, on the test images.
//!
//! `make bench-inference` (or `cargo run --release --example inference_bench -- --write-docs`)
//! after `make assets`. The three measurements alternate within each iteration so that
//! frequency changes and the other core's load affect them alike.

// Only the doc-writing helpers are used here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use synopticon_actors::inference::frame::{self, ImageLimits};
use synopticon_actors::inference::{runtime, DetectOptions, Detector, ModelConfig, ModelKind};

const WARMUP: usize = 3;
const LIMITS: ImageLimits = ImageLimits {
    max_bytes: 64 << 20,
    max_pixels: 100_000_000,
};

fn cache() -> PathBuf {
    std::env::var_os("SYNOPTICON_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.cache").into())
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let write = std::env::args().any(|a| a == "--write-docs");
    let library = runtime::resolve_library("");
    let rt = runtime::load(&library).unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            ModelConfig::new(
                "face",
                ModelKind::Centerface,
                cache().join("models/centerface.onnx"),
            ),
            "zidane.jpg",
            20,
        ),
        (
            ModelConfig::new(
                "nudenet",
                ModelKind::Yolov8,
                cache().join("models/nudenet-320n.onnx"),
            ),
            "bus.jpg",
            100,
        ),
    ];
    let mut rows = Vec::new();
    for (config, image, iterations) in cases {
        let mut detector = Detector::load(&rt, &config).unwrap_or_else(|e| panic!("{e}"));
        let jpeg = std::fs::read(cache().join("images").join(image)).expect("run `make assets`");
        let frame = frame::decode(&jpeg, &LIMITS).expect("decode");
        let options = DetectOptions::default();
        let input = detector.info().input_size.unwrap_or([
            frame.width.div_ceil(32) * 32,
            frame.height.div_ceil(32) * 32,
        ]);
        let (mut bare, mut full, mut with_jpeg, mut decode) = (vec![], vec![], vec![], vec![]);
        for i in 0..WARMUP + iterations {
            let b = detector.run_bare(&frame).expect("run");
            let started = Instant::now();
            let found = detector.detect(&frame, &options).expect("detect");
            let f = started.elapsed().as_secs_f64() * 1e3;
            let started = Instant::now();
            let decoded = frame::decode(&jpeg, &LIMITS).expect("decode");
            let d = started.elapsed().as_secs_f64() * 1e3;
            detector.detect(&decoded, &options).expect("detect");
            let j = started.elapsed().as_secs_f64() * 1e3;
            if i >= WARMUP {
                bare.push(b);
                full.push(f);
                with_jpeg.push(j);
                decode.push(d);
            }
            if i == 0 {
                println!("{}: {} detections", config.name, found.detections.len());
            }
        }
        let (b, f, j, d) = (
            median(&mut bare),
            median(&mut full),
            median(&mut with_jpeg),
            median(&mut decode),
        );
        let row = format!(
            "| {} ({}) on {image} {}x{} | {}x{} | {b:.2} | {f:.2} | {:+.1}% | {d:.2} | {j:.2} | {:+.1}% |",
            config.name,
            config.kind.as_str(),
            frame.width,
            frame.height,
            input[0],
            input[1],
            (f - b) / b * 100.0,
            (j - b) / b * 100.0,
        );
        println!("{row}");
        rows.push(row);
    }
    let table = format!(
        "{}, release build, ONNX Runtime {} (CPU, default threads), medians of 20 (CenterFace) and 100 (NudeNet) runs, in ms.\n\n\
         | Model on image | Input | Session::run | Full path | Over bare | JPEG decode | Full path + JPEG | Over bare |\n\
         |---|---|---|---|---|---|---|---|\n{}\n",
        common::machine(),
        rt.version,
        rows.join("\n")
    );
    print!("{table}");
    if write {
        common::write_docs("inference", &table);
    }
}
