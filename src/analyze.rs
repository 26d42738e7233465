//! `synopticon analyze INPUT --model NAME [--out FILE]`: offline detection over an image,
//! a folder of images or a video, written as JSON lines in the detection envelope.
//!
//! Videos are decoded by an `ffmpeg` subprocess that writes raw RGB frames to a pipe
//! (`ffprobe` gives the size first), so every container and codec ffmpeg knows works,
//! and nothing is linked against libav. Progress goes to stderr (drawn only on a
//! terminal); the summary goes to stderr at the end; stdout carries only JSON lines
//! when no `--out` is given.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use synopticon_actors::inference::envelope::{DetectionMessage, SourceInfo};
use synopticon_actors::inference::frame::{self, Frame};
use synopticon_actors::inference::{runtime, DetectOptions, Detections, Detector};
use synopticon_actors::source::capture;

use crate::configuration::Settings;

/// What `analyze` was asked to do.
pub struct AnalyzeArgs {
    /// Image, folder or video.
    pub input: PathBuf,
    /// Model name from the configuration (the default model when `None`).
    pub model: Option<String>,
    /// Output file; stdout when `None`.
    pub out: Option<PathBuf>,
    /// Analyse every n-th video frame.
    pub every: u64,
    /// Overrides the model's confidence threshold.
    pub confidence: Option<f32>,
}

/// Counts for the final summary.
#[derive(Default)]
struct Summary {
    frames: u64,
    skipped: u64,
    detections: u64,
    by_class: BTreeMap<String, u64>,
    inference_ms: f64,
    total_ms: f64,
}

impl Summary {
    fn add(&mut self, result: &Detections) {
        self.frames += 1;
        self.detections += result.detections.len() as u64;
        for d in &result.detections {
            *self.by_class.entry(d.class_name.to_string()).or_default() += 1;
        }
        let t = result.timings;
        self.inference_ms += t.inference_ms;
        self.total_ms += t.decode_ms + t.preprocess_ms + t.inference_ms + t.postprocess_ms;
    }
}

const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Runs the analysis; errors are for people (they name the fix).
pub fn run(settings: &Settings, args: AnalyzeArgs) -> anyhow::Result<()> {
    let inference = &settings.inference;
    let wanted = args
        .model
        .clone()
        .or_else(|| (!inference.default_model.is_empty()).then(|| inference.default_model.clone()))
        .or_else(|| inference.models.first().map(|m| m.name.clone()))
        .ok_or_else(|| anyhow!("no models are configured: add one under [[inference.models]]"))?;
    let config = inference
        .models
        .iter()
        .find(|m| m.name == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = inference.models.iter().map(|m| m.name.as_str()).collect();
            anyhow!(
                "no model named {wanted:?} (configured: {})",
                names.join(", ")
            )
        })?;
    if !args.input.exists() {
        bail!("{} does not exist", args.input.display());
    }
    let rt = runtime::load(&inference.library())?;
    let mut detector = Detector::load(&rt, config)?;
    let options = DetectOptions {
        confidence: args.confidence,
        classes: None,
    };

    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let device = hostname();
    let camera = args
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.input.display().to_string());
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut emit = |number: u64,
                    result: &Detections,
                    time_ms: Option<f64>,
                    file: Option<String>|
     -> anyhow::Result<()> {
        let mut message = DetectionMessage::new(
            SourceInfo::new(&device, &camera, Utc::now()),
            number,
            result,
        );
        message.frame.time_ms = time_ms;
        message.frame.file = file;
        serde_json::to_writer(&mut out, &message)?;
        out.write_all(b"\n")?;
        Ok(())
    };

    if args.input.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&args.input)
            .with_context(|| format!("cannot list {}", args.input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image_path(p))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "{} holds no .jpg, .jpeg or .png files",
                args.input.display()
            );
        }
        let bar = progress(Some(files.len() as u64), "images");
        for (number, path) in files.iter().enumerate() {
            bar.inc(1);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            match analyze_image(&mut detector, path, &options, settings) {
                Ok(result) => {
                    summary.add(&result);
                    emit(number as u64, &result, None, name)?;
                }
                Err(e) => {
                    summary.skipped += 1;
                    bar.suspend(|| eprintln!("skipped {}: {e}", path.display()));
                }
            }
        }
        bar.finish_and_clear();
    } else if is_image_path(&args.input) || sniff_file(&args.input) {
        let result = analyze_image(&mut detector, &args.input, &options, settings)?;
        summary.add(&result);
        emit(0, &result, None, Some(camera.clone()))?;
    } else {
        analyze_video(&mut detector, &args, &options, &mut summary, &mut emit)?;
    }
    out.flush()?;

    let elapsed = started.elapsed().as_secs_f64();
    let classes: Vec<String> = summary
        .by_class
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    eprintln!(
        "analyzed {} frame(s) of {} with model {:?} in {:.1} s ({:.1} frames/s): {} detection(s){}{}; mean inference {:.1} ms, mean full path {:.1} ms{}",
        summary.frames,
        args.input.display(),
        config.name,
        elapsed,
        summary.frames as f64 / elapsed.max(1e-9),
        summary.detections,
        if classes.is_empty() { "" } else { " (" },
        if classes.is_empty() { String::new() } else { classes.join(", ") + ")" },
        summary.inference_ms / summary.frames.max(1) as f64,
        summary.total_ms / summary.frames.max(1) as f64,
        if summary.skipped > 0 {
            format!("; {} file(s) skipped", summary.skipped)
        } else {
            String::new()
        },
    );
    if summary.frames == 0 {
        bail!("no frame could be analysed");
    }
    Ok(())
}

fn analyze_image(
    detector: &mut Detector,
    path: &Path,
    options: &DetectOptions,
    settings: &Settings,
) -> anyhow::Result<Detections> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let started = Instant::now();
    let frame = frame::decode(&bytes, &settings.inference.limits())?;
    let decode_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut result = detector.detect(&frame, options)?;
    result.timings.decode_ms = decode_ms;
    Ok(result)
}

fn sniff_file(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| frame::sniff(&head).is_some())
}

fn analyze_video(
    detector: &mut Detector,
    args: &AnalyzeArgs,
    options: &DetectOptions,
    summary: &mut Summary,
    emit: &mut impl FnMut(u64, &Detections, Option<f64>, Option<String>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (width, height, fps, frames) =
        capture::probe(&args.input.to_string_lossy()).map_err(|e| anyhow!(e))?;
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&args.input)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow!("cannot run ffmpeg ({e}): install it with `apt-get install ffmpeg`")
        })?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("ffmpeg has no stdout"))?;
    let bar = progress(frames, "frames");
    let size = width as usize * height as usize * 3;
    let mut number = 0u64;
    let outcome = (|| -> anyhow::Result<()> {
        loop {
            let mut buffer = vec![0u8; size];
            match stdout.read_exact(&mut buffer) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            bar.inc(1);
            if number % args.every == 0 {
                let frame = Frame::from_rgb(width, height, buffer)?;
                let result = detector.detect(&frame, options)?;
                summary.add(&result);
                let time_ms = fps.map(|f| number as f64 * 1000.0 / f);
                emit(number, &result, time_ms, None)?;
            }
            number += 1;
        }
    })();
    bar.finish_and_clear();
    if outcome.is_err() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    outcome?;
    if !status.success() {
        bail!(
            "ffmpeg failed on {} after {number} frame(s): {}",
            args.input.display(),
            stderr.trim()
        );
    }
    Ok(())
}

fn progress(length: Option<u64>, unit: &str) -> ProgressBar {
    match length {
        Some(n) => {
            let bar = ProgressBar::new(n);
            let template = format!(
                "{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}, {{per_sec}}, eta {{eta}}]"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            let template = format!("{{spinner}} {{pos}} {unit} [{{elapsed_precise}}, {{per_sec}}]");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "synopticon".into())
}
