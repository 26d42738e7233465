//! The tracker against ground truth and against the `supervision` package's ByteTrack
//! (PyPI) on the same synthetic detections, scored by the same CLEAR-MOT scorer.

use serde_json::{json, Value};
use synopticon_actors::inference::BBox;
use synopticon_actors::tracker::eval::{self, MotScore};
use synopticon_actors::tracker::TrackerConfig;

use crate::helpers::cache_dir;

const FPS: f64 = 30.0;

fn supervision(scene: &eval::Scene) -> MotScore {
    let python = cache_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make test-deps` (scripts/reference-env.sh builds it)",
        python.display()
    );
    let frames: Vec<Value> = (0..scene.frames)
        .map(|f| {
            eval::detections(scene, f)
                .iter()
                .map(|d| json!({"bbox": [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2], "confidence": d.confidence}))
                .collect()
        })
        .collect();
    let input = json!({"fps": FPS, "frames": frames}).to_string();
    let mut child = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/supervision_track.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run supervision_track.py");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write detections");
    }
    let output = child.wait_with_output().expect("supervision output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<(u32, u64, [f32; 4])> = serde_json::from_slice(&output.stdout).expect("JSON");
    let outputs: Vec<(u32, u64, BBox)> = rows
        .into_iter()
        .map(|(f, id, b)| {
            (
                f,
                id,
                BBox {
                    x1: b[0],
                    y1: b[1],
                    x2: b[2],
                    y2: b[3],
                },
            )
        })
        .collect();
    eval::score(scene, &outputs)
}

#[test]
fn the_tracker_matches_supervision_bytetrack_on_synthetic_scenes() {
    println!("| Scene | Tracker | GT boxes | Misses | False pos. | ID switches | Ids | MOTA |");
    println!("|---|---|---|---|---|---|---|---|");
    for scene in eval::scenes() {
        let ours = eval::run(&scene, &TrackerConfig::default(), FPS);
        let theirs = supervision(&scene);
        for (name, s) in [("synopticon", &ours), ("supervision 0.27.0", &theirs)] {
            println!(
                "| {} | {name} | {} | {} | {} | {} | {} | {:.3} |",
                scene.name,
                s.ground_truth,
                s.misses,
                s.false_positives,
                s.id_switches,
                s.tracks,
                s.mota
            );
        }
        // Ours: no ID switch, one id per object, and within 0.02 MOTA of supervision.
        assert_eq!(ours.id_switches, 0, "{}: {ours:?}", scene.name);
        assert_eq!(
            ours.tracks,
            scene.actors.len() as u64,
            "{}: {ours:?}",
            scene.name
        );
        assert!(
            ours.mota >= theirs.mota - 0.02,
            "{}: ours {ours:?} theirs {theirs:?}",
            scene.name
        );
        // Theirs really ran on these detections: a sane tracking, not an empty output
        // (an empty one would make the comparison above pass vacuously).
        assert!(
            theirs.mota > 0.8 && theirs.tracks >= scene.actors.len() as u64,
            "{}: supervision gave {theirs:?}",
            scene.name
        );
    }
}
