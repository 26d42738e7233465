//! Greedy non-maximum suppression: strongest box first, and a box is dropped when it
//! overlaps a kept box of the same class by more than the IoU threshold.

use super::BBox;

/// A scored box before suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Box (any coordinate space, as long as all candidates share it).
    pub bbox: BBox,
    /// Score.
    pub score: f32,
    /// Class; boxes of different classes never suppress each other.
    pub class_id: u32,
    /// Index into side data (landmarks), carried through.
    pub index: usize,
}

/// Keeps at most `limit` candidates, strongest first.
pub fn suppress(mut candidates: Vec<Candidate>, iou: f32, limit: usize) -> Vec<Candidate> {
    // Stable sort: equal scores keep their output order, so results are reproducible.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if kept.len() == limit {
            break;
        }
        let overlaps = kept
            .iter()
            .any(|k| k.class_id == candidate.class_id && k.bbox.iou(&candidate.bbox) > iou);
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x1: f32, score: f32, class_id: u32) -> Candidate {
        Candidate {
            bbox: BBox {
                x1,
                y1: 0.0,
                x2: x1 + 10.0,
                y2: 10.0,
            },
            score,
            class_id,
            index: 0,
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_strongest() {
        let kept = suppress(
            vec![c(0.0, 0.6, 0), c(1.0, 0.9, 0), c(50.0, 0.5, 0)],
            0.45,
            10,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.5]);
    }

    #[test]
    fn other_classes_and_the_limit() {
        let kept = suppress(vec![c(0.0, 0.6, 0), c(1.0, 0.9, 1)], 0.45, 10);
        assert_eq!(
            kept.len(),
            2,
            "different classes do not suppress each other"
        );
        let kept = suppress(vec![c(0.0, 0.6, 0), c(100.0, 0.9, 0)], 0.45, 1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].score, 0.9);
    }
}
