//! `synopticon analyze`: the real binary on a real image, an image folder and a video made
//! by ffmpeg, with the face model; output checked line by line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{asset, ort_library};

struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("synopticon-analyze-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = format!(
            "[inference]\nruntime_path = {:?}\ndefault_model = \"face\"\n\n\
             [[inference.models]]\nname = \"face\"\nkind = \"centerface\"\npath = {:?}\n",
            ort_library(),
            asset("models/centerface.onnx").display().to_string(),
        );
        std::fs::write(dir.join("config.toml"), config).expect("write config");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn analyze(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_synopticon"))
            .arg("analyze")
            .args(args)
            .arg("--config")
            .arg(self.path("config.toml"))
            .env_remove("SYNOPTICON_CONFIG")
            .output()
            .expect("run synopticon analyze")
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lines(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn faces(line: &Value) -> usize {
    line["detections"].as_array().map_or(0, Vec::len)
}

#[test]
fn an_image_gives_one_envelope_with_both_faces() {
    let work = Workdir::new();
    let image = asset("images/zidane.jpg");

    let output = work.analyze(&[image.to_str().expect("path"), "--model", "face"]);

    let out = lines(&output);
    assert_eq!(out.len(), 1);
    let line = &out[0];
    assert_eq!(line["version"], 1);
    assert_eq!(line["source"]["camera_id"], "zidane.jpg");
    assert!(line["source"]["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(line["frame"]["number"], 0);
    assert_eq!(line["frame"]["width"], 1280);
    assert_eq!(line["frame"]["height"], 720);
    assert_eq!(line["model"], "face");
    assert_eq!(faces(line), 2);
    let d = &line["detections"][0];
    assert_eq!(d["class_name"], "face");
    let (x1, x2) = (
        d["bbox"]["x1"].as_f64().unwrap_or(0.0),
        d["bbox"]["x2"].as_f64().unwrap_or(0.0),
    );
    assert!((d["center"]["x"].as_f64().unwrap_or(0.0) - (x1 + x2) / 2.0).abs() < 0.01);
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("analyzed 1 frame(s)") && summary.contains("face: 2"),
        "{summary}"
    );
}

#[test]
fn a_folder_is_analysed_in_name_order_and_bad_files_are_skipped_and_reported() {
    let work = Workdir::new();
    let folder = work.path("images");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::copy(asset("images/zidane.jpg"), folder.join("b-zidane.jpg")).expect("copy");
    std::fs::copy(asset("images/bus.jpg"), folder.join("a-bus.jpg")).expect("copy");
    std::fs::write(folder.join("c-broken.jpg"), b"not really a jpeg").expect("write");
    std::fs::write(folder.join("notes.txt"), b"ignored: not an image name").expect("write");
    let out_file = work.path("out.jsonl");

    let output = work.analyze(&[
        folder.to_str().expect("path"),
        "--out",
        out_file.to_str().expect("path"),
    ]);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty(), "JSON goes to --out, not stdout");
    let out = read_lines(&out_file);
    let files: Vec<&str> = out
        .iter()
        .map(|l| l["frame"]["file"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(files, ["a-bus.jpg", "b-zidane.jpg"]);
    assert_eq!(out[0]["frame"]["number"], 0);
    assert_eq!(out[1]["frame"]["number"], 1);
    assert_eq!(faces(&out[1]), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("c-broken.jpg"),
        "{stderr}"
    );
    assert!(stderr.contains("1 file(s) skipped"), "{stderr}");
}

#[test]
fn a_video_is_decoded_by_ffmpeg_frame_by_frame() {
    let work = Workdir::new();
    let video = work.path("clip.mp4");
    // Three frames at 3 fps, each the zidane photo.
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-i"])
        .arg(asset("images/zidane.jpg"))
        .args(["-t", "1", "-r", "3", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .expect("ffmpeg is installed (make test-deps installs it)");
    assert!(made.success());

    let all = lines(&work.analyze(&[video.to_str().expect("path")]));
    let every_2 = lines(&work.analyze(&[video.to_str().expect("path"), "--every", "2"]));

    let numbers = |out: &[Value]| {
        out.iter()
            .map(|l| l["frame"]["number"].as_u64().unwrap_or(99))
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(&all), [0, 1, 2]);
    let times: Vec<f64> = all
        .iter()
        .map(|l| l["frame"]["time_ms"].as_f64().unwrap_or(-1.0))
        .collect();
    assert!((times[1] - 1000.0 / 3.0).abs() < 0.5, "{times:?}");
    assert!(all
        .iter()
        .all(|l| faces(l) == 2 && l["source"]["camera_id"] == "clip.mp4"));
    assert_eq!(numbers(&every_2), [0, 2]);
}

#[test]
fn bad_arguments_fail_with_a_message_that_says_why() {
    let work = Workdir::new();
    let image = asset("images/zidane.jpg");
    let garbage = work.path("broken.mp4");
    std::fs::write(&garbage, b"this is not a video").expect("write");

    let cases = [
        (
            vec![image.to_str().expect("path"), "--model", "nope"],
            "no model named \"nope\"",
        ),
        (vec!["/nonexistent/input.mp4"], "does not exist"),
        (vec![garbage.to_str().expect("path")], "ffprobe cannot read"),
        (
            vec![image.to_str().expect("path"), "--confidence", "3"],
            "between 0 and 1",
        ),
    ];
    for (args, needle) in cases {
        let output = work.analyze(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
