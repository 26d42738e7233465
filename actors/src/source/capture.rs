//! Capture threads: each reads frames from one place and hands them to its source actor.
//!
//! Files and streams are decoded by an `ffmpeg` subprocess writing raw RGB
//! frames to a pipe, so every container, codec and protocol ffmpeg knows works and nothing
//! links against libav. Cameras are read natively ([`super::camera`]). Files are read at their own pace (`-re`) and resampled to the
//! source's frame rate. Image folders and the synthetic pattern are paced here. A capture
//! that ends or fails reports why; restarting is the actor's decision.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{SourceConfig, SourceKind};
use crate::egress::{EgressPolicy, Use};
use crate::inference::frame::{self, Frame, ImageLimits};

/// Capture thread → source actor: a new frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FrameCaptured(pub Arc<Frame>);

/// Capture thread → source actor: the capture stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CaptureEnded {
    /// Why, when it failed (`None`: a file or folder reached its end).
    pub error: Option<String>,
}

/// Stops a capture thread and its subprocess.
#[derive(Clone, Default)]
pub struct CaptureControl {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
}

impl CaptureControl {
    /// Asks the thread to stop and kills its ffmpeg, if any.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let pid = self.pid.load(Ordering::Relaxed);
        if pid != 0 {
            // SAFETY: kill(2) has no memory effects; at worst the pid is gone already.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }

    /// The running ffmpeg's process id (0 when none).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Whether the thread was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Images a folder source decodes.
const FOLDER_LIMITS: ImageLimits = ImageLimits {
    max_bytes: 64 << 20,
    max_pixels: 40_000_000,
};

/// Starts the capture thread of `config`, sending frames and its end to the actor; a
/// stream connects only where `egress` allows.
pub fn start(
    config: &SourceConfig,
    frames: Recipient<FrameCaptured>,
    ended: Recipient<CaptureEnded>,
    egress: Arc<EgressPolicy>,
) -> CaptureControl {
    let control = CaptureControl::default();
    let thread_control = control.clone();
    let config = config.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("capture-{}", config.id))
        .spawn(move || {
            let result = match config.kind {
                SourceKind::File | SourceKind::Stream => {
                    ffmpeg(&config, &frames, &thread_control, &egress)
                }
                SourceKind::V4l2 => super::camera::v4l2(&config, &frames, &thread_control),
                SourceKind::Camera => super::camera::native(&config, &frames, &thread_control),
                SourceKind::Folder => folder(&config, &frames, &thread_control),
                SourceKind::Synthetic => synthetic(&config, &frames, &thread_control),
                SourceKind::External => Ok(()),
            };
            if !thread_control.is_stopped() {
                ended.do_send(CaptureEnded {
                    error: result.err(),
                });
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a capture thread");
    }
    control
}

/// Sleeps until the next frame is due.
struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    fn new(fps: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        } else if now - self.next > self.period * 4 {
            // Far behind (a slow decode): do not try to catch up with a burst.
            self.next = now;
        }
        self.next += self.period;
    }
}

fn synthetic(
    config: &SourceConfig,
    frames: &Recipient<FrameCaptured>,
    control: &CaptureControl,
) -> Result<(), String> {
    let [w, h] = config.size.unwrap_or([640, 480]);
    let side = (h / 4).max(4);
    let mut pacer = Pacer::new(config.fps);
    let mut n: u64 = 0;
    while !control.is_stopped() {
        pacer.wait();
        let mut rgb = vec![64u8; (w * h * 3) as usize];
        let x0 = (n * 8 % u64::from(w.saturating_sub(side).max(1))) as u32;
        let y0 = (h - side) / 2;
        for y in y0..y0 + side {
            let row = (y * w * 3) as usize;
            rgb[row + (x0 * 3) as usize..row + ((x0 + side) * 3) as usize].fill(230);
        }
        let frame = Frame::from_rgb(w, h, rgb).map_err(|e| e.to_string())?;
        frames.do_send(FrameCaptured(Arc::new(frame)));
        n += 1;
    }
    Ok(())
}

fn folder(
    config: &SourceConfig,
    frames: &Recipient<FrameCaptured>,
    control: &CaptureControl,
) -> Result<(), String> {
    let dir = PathBuf::from(config.url.clone().unwrap_or_default());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        // Confined (server.media_dirs): an image linked from elsewhere is not read.
        .filter(|p| {
            !config.confined || std::fs::canonicalize(p).is_ok_and(|real| real.starts_with(&dir))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} holds no .jpg, .jpeg or .png files",
            dir.display()
        ));
    }
    let mut pacer = Pacer::new(config.fps);
    loop {
        for path in &files {
            if control.is_stopped() {
                return Ok(());
            }
            pacer.wait();
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            match frame::decode(&bytes, &FOLDER_LIMITS) {
                Ok(frame) => frames.do_send(FrameCaptured(Arc::new(frame))),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "skipping an image"),
            }
        }
        if !config.repeat {
            return Ok(());
        }
    }
}

/// Longest wait for `ffprobe` to describe an input (a stream that never answers).
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the watchdog looks at a running ffmpeg.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);
/// Lines of ffmpeg's stderr kept for the error message.
const STDERR_LINES: usize = 20;

/// For a file confined to `server.media_dirs`: only local files, and only container
/// formats that hold one video, so a playlist (HLS, ffconcat) cannot pull in a file from
/// elsewhere.
const CONFINED_INPUT: [&str; 4] = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "avi,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,flv,mjpeg,h264,hevc,mpeg,mpegvideo,ogg,asf",
];

/// Size, frame rate and frame count (when known) of a video, from `ffprobe`.
pub fn probe(input: &str) -> Result<(u32, u32, Option<f64>, Option<u64>), String> {
    probe_with(input, &Arc::new(AtomicU32::new(0)), &[])
}

/// [`probe`], publishing ffprobe's pid in `pid` so that a stop can kill it, and killing it
/// after [`PROBE_TIMEOUT`].
fn probe_with(
    input: &str,
    pid: &Arc<AtomicU32>,
    input_options: &[&str],
) -> Result<(u32, u32, Option<f64>, Option<u64>), String> {
    let mut child = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(input_options)
        .args([
            "-show_entries",
            "stream=width,height,avg_frame_rate,nb_frames",
        ])
        .args(["-of", "json"])
        // `-i` so that an input is never read as an option.
        .arg("-i")
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run ffprobe ({e}): install ffmpeg (`apt-get install ffmpeg`)")
        })?;
    pid.store(child.id(), Ordering::Relaxed);
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                pid.store(0, Ordering::Relaxed);
                return Err(format!(
                    "ffprobe could not read {input} within {} s",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                pid.store(0, Ordering::Relaxed);
                return Err(format!("waiting for ffprobe: {e}"));
            }
        }
    };
    pid.store(0, Ordering::Relaxed);
    // ffprobe's answer is small: it fits the pipe, so reading after exit cannot block it.
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        return Err(format!("ffprobe cannot read {input}: {}", stderr.trim()));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| format!("ffprobe output: {e}"))?;
    let stream = info["streams"]
        .get(0)
        .ok_or_else(|| format!("{input} has no video stream"))?;
    let dim = |k: &str| {
        stream[k]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0 && *v <= 16384)
            .ok_or_else(|| format!("ffprobe gave no usable {k} for {input}"))
    };
    let fps = stream["avg_frame_rate"].as_str().and_then(|r| {
        let (n, d) = r.split_once('/')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0 && n > 0.0).then_some(n / d)
    });
    let frames = stream["nb_frames"].as_str().and_then(|n| n.parse().ok());
    Ok((dim("width")?, dim("height")?, fps, frames))
}

/// Most pixels of a captured frame: 4K UHD (3840x2160, 25 MB as RGB). Larger streams
/// are scaled down, keeping their shape.
pub const MAX_CAPTURE_PIXELS: u64 = 3840 * 2160;

/// The size frames are captured at: the stream's own, or scaled down to fit
/// [`MAX_CAPTURE_PIXELS`], with even sides (what most codecs and filters want).
pub fn capture_size(width: u32, height: u32) -> (u32, u32) {
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= MAX_CAPTURE_PIXELS {
        return (width, height);
    }
    let k = (MAX_CAPTURE_PIXELS as f64 / pixels as f64).sqrt();
    let even = |v: u32| (((f64::from(v) * k) as u32) & !1).max(2);
    (even(width), even(height))
}

/// Milliseconds since `epoch`, for the watchdog's "last frame" mark.
fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// The URL ffmpeg opens for a stream, and options it needs, after the egress policy: the
/// host is resolved, and the stream is opened at the first allowed address itself, so a
/// name that changes its answer after the check (DNS rebinding) gets nowhere. An `http`
/// or `https` stream keeps its `Host` header and may not be redirected elsewhere. A URL
/// that only receives (`udp://@:5000`) connects nowhere and is opened as written.
fn through_egress(url: &str, egress: &EgressPolicy) -> Result<(String, Vec<String>), String> {
    let Some((host, port)) = super::stream_target(url) else {
        return Ok((url.to_string(), Vec::new()));
    };
    let addresses = egress.resolve_blocking(&host, port, Use::Connect)?;
    let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let ip = match addresses[0].ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    parsed
        .set_host(Some(&ip))
        .map_err(|e| format!("{url}: cannot address {ip}: {e}"))?;
    let mut options = Vec::new();
    if matches!(parsed.scheme(), "http" | "https") {
        let shown = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        options.extend([
            "-headers".to_string(),
            format!("Host: {shown}\r\n"),
            // A redirect would lead ffmpeg to a host nobody checked.
            "-max_redirects".to_string(),
            "0".to_string(),
        ]);
    }
    Ok((parsed.to_string(), options))
}

fn ffmpeg(
    config: &SourceConfig,
    frames: &Recipient<FrameCaptured>,
    control: &CaptureControl,
    egress: &EgressPolicy,
) -> Result<(), String> {
    let mut input = config.url.clone().unwrap_or_default();
    if config.kind == SourceKind::File && !Path::new(&input).is_file() {
        return Err(format!("{input} not found"));
    }
    let mut options: Vec<String> = Vec::new();
    if config.confined && config.kind == SourceKind::File {
        options.extend(CONFINED_INPUT.iter().map(|o| o.to_string()));
    }
    if config.kind == SourceKind::Stream {
        (input, options) = through_egress(&input, egress)?;
    }
    let input_options: Vec<&str> = options.iter().map(String::as_str).collect();
    let input_options = input_options.as_slice();
    let (probed_w, probed_h, _, _) = probe_with(&input, &control.pid, input_options)?;
    if control.is_stopped() {
        return Ok(());
    }
    // ffmpeg is told the size, so what it writes is exactly what is read, and a huge
    // stream is scaled down rather than allowed gigabyte frames.
    let (width, height) = capture_size(probed_w, probed_h);
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-nostdin"]);
    if config.kind == SourceKind::File {
        if config.repeat {
            command.args(["-stream_loop", "-1"]);
        }
        command.arg("-re");
    }
    let mut child = command
        .args(input_options)
        .arg("-i")
        .arg(&input)
        .args(["-vf", &format!("fps={},scale={width}:{height}", config.fps)])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run ffmpeg ({e}): install it with `apt-get install ffmpeg`")
        })?;
    control.pid.store(child.id(), Ordering::Relaxed);
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        control.pid.store(0, Ordering::Relaxed);
        return Err("ffmpeg has no stdout".into());
    };

    // ffmpeg's complaints are read as they come (a full stderr pipe would stall it); the
    // last lines make the error message.
    let stderr_tail = Arc::new(parking_lot::Mutex::new(VecDeque::new()));
    if let Some(err) = child.stderr.take() {
        let tail = stderr_tail.clone();
        let _ = std::thread::Builder::new()
            .name(format!("ffmpeg-stderr-{}", config.id))
            .spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut tail = tail.lock();
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
    }

    // A stream that stops sending without closing would block the read below forever:
    // the watchdog kills an ffmpeg that has produced no frame for the stall timeout.
    let stall = config
        .stall_timeout()
        .max(Duration::from_secs_f64(3.0 / config.fps));
    let epoch = Instant::now();
    let last_frame = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    // Held while the watchdog kills, and set before the child is reaped: the watchdog never
    // signals a pid the system may have given to another process.
    let done = Arc::new(parking_lot::Mutex::new(false));
    {
        let (last_frame, stalled, done) = (last_frame.clone(), stalled.clone(), done.clone());
        let pid = child.id();
        let _ = std::thread::Builder::new()
            .name(format!("ffmpeg-watchdog-{}", config.id))
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCHDOG_TICK);
                    let done = done.lock();
                    if *done {
                        return;
                    }
                    let idle =
                        millis_since(epoch).saturating_sub(last_frame.load(Ordering::Relaxed));
                    if idle > stall.as_millis() as u64 {
                        stalled.store(true, Ordering::Relaxed);
                        // SAFETY: kill(2) has no memory effects; the child is not reaped
                        // while `done` is false and locked here, so the pid is still ours.
                        unsafe {
                            libc::kill(pid as i32, libc::SIGKILL);
                        }
                        return;
                    }
                }
            });
    }

    let size = width as usize * height as usize * 3;
    let read = loop {
        if control.is_stopped() {
            break Ok(());
        }
        let mut buffer = vec![0u8; size];
        match stdout.read_exact(&mut buffer) {
            Ok(()) => {
                last_frame.store(millis_since(epoch), Ordering::Relaxed);
                match Frame::from_rgb(width, height, buffer) {
                    Ok(frame) => frames.do_send(FrameCaptured(Arc::new(frame))),
                    // Never leave without killing and reaping ffmpeg (below).
                    Err(e) => break Err(e.to_string()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(format!("reading from ffmpeg: {e}")),
        }
    };
    let _ = child.kill();
    *done.lock() = true;
    let status = child.wait().map_err(|e| e.to_string())?;
    control.pid.store(0, Ordering::Relaxed);
    read?;
    if control.is_stopped() {
        return Ok(());
    }
    if stalled.load(Ordering::Relaxed) {
        return Err(format!(
            "no frame from ffmpeg for {} ms; killed it",
            stall.as_millis()
        ));
    }
    if !status.success() {
        // Give the reader a moment to take the last lines ffmpeg wrote before dying.
        std::thread::sleep(Duration::from_millis(50));
        let why = stderr_tail
            .lock()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(if why.is_empty() {
            format!("ffmpeg exited with {status}")
        } else {
            format!("ffmpeg exited with {status}: {why}")
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_up_to_4k_keep_their_size_larger_ones_shrink_keeping_their_shape() {
        assert_eq!(capture_size(640, 480), (640, 480));
        assert_eq!(capture_size(3840, 2160), (3840, 2160));
        assert_eq!(capture_size(2160, 3840), (2160, 3840));
        let (w, h) = capture_size(16384, 16384);
        assert!(u64::from(w) * u64::from(h) <= MAX_CAPTURE_PIXELS, "{w}x{h}");
        assert_eq!((w, h), (2880, 2880));
        let (w, h) = capture_size(7680, 4320);
        assert!(u64::from(w) * u64::from(h) <= MAX_CAPTURE_PIXELS, "{w}x{h}");
        assert!((f64::from(w) / f64::from(h) - 16.0 / 9.0).abs() < 0.01);
        assert_eq!((w % 2, h % 2), (0, 0));
    }
}
