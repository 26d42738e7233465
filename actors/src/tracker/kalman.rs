//! The constant-velocity Kalman filter of a tracked box.
//!
//! The state is centre x, centre y, width and height, each with its velocity. As in SORT
//! and ByteTrack, the process and measurement noise are diagonal and scale with the box
//! height, and each coordinate only ever mixes with its own velocity; so the 8-dimensional
//! filter falls apart into four independent 2x2 filters, which is what is computed here
//! (same numbers, a fraction of the arithmetic).

use crate::inference::BBox;

/// Position noise per unit of box height (ByteTrack's 1/20).
const STD_POSITION: f32 = 1.0 / 20.0;
/// Velocity noise per unit of box height (ByteTrack's 1/160).
const STD_VELOCITY: f32 = 1.0 / 160.0;

/// One coordinate and its velocity, with their 2x2 covariance.
#[derive(Debug, Clone, Copy)]
struct Axis {
    x: f32,
    v: f32,
    /// Covariance [[pxx, pxv], [pxv, pvv]].
    pxx: f32,
    pxv: f32,
    pvv: f32,
}

impl Axis {
    fn new(x: f32, std_x: f32, std_v: f32) -> Self {
        Self {
            x,
            v: 0.0,
            pxx: std_x * std_x,
            pxv: 0.0,
            pvv: std_v * std_v,
        }
    }

    fn predict(&mut self, q_x: f32, q_v: f32) {
        self.x += self.v;
        // P = F P F' + Q with F = [[1, 1], [0, 1]].
        self.pxx += 2.0 * self.pxv + self.pvv + q_x;
        self.pxv += self.pvv;
        self.pvv += q_v;
    }

    fn update(&mut self, z: f32, r: f32) {
        let s = self.pxx + r;
        let (kx, kv) = (self.pxx / s, self.pxv / s);
        let innovation = z - self.x;
        self.x += kx * innovation;
        self.v += kv * innovation;
        let (pxx, pxv, pvv) = (self.pxx, self.pxv, self.pvv);
        self.pxx = (1.0 - kx) * pxx;
        self.pxv = (1.0 - kx) * pxv;
        self.pvv = pvv - kv * pxv;
    }
}

/// A box's motion state.
#[derive(Debug, Clone, Copy)]
pub struct BoxFilter {
    axes: [Axis; 4],
}

impl BoxFilter {
    /// Starts from a first observation, at rest.
    pub fn new(b: &BBox) -> Self {
        let [cx, cy, w, h] = measure(b);
        let sx = 2.0 * STD_POSITION * h;
        let sv = 10.0 * STD_VELOCITY * h;
        Self {
            axes: [
                Axis::new(cx, sx, sv),
                Axis::new(cy, sx, sv),
                Axis::new(w, sx, sv),
                Axis::new(h, sx, sv),
            ],
        }
    }

    /// Moves the state one frame ahead.
    pub fn predict(&mut self) {
        let h = self.axes[3].x.max(1.0);
        let q_x = (STD_POSITION * h).powi(2);
        let q_v = (STD_VELOCITY * h).powi(2);
        for axis in &mut self.axes {
            axis.predict(q_x, q_v);
        }
    }

    /// Corrects the state with an observed box.
    pub fn update(&mut self, b: &BBox) {
        let z = measure(b);
        let r = (STD_POSITION * z[3].max(1.0)).powi(2);
        for (axis, z) in self.axes.iter_mut().zip(z) {
            axis.update(z, r);
        }
    }

    /// The current box estimate.
    pub fn bbox(&self) -> BBox {
        let [cx, cy, w, h] = self.axes.map(|a| a.x);
        let (w, h) = (w.max(1.0), h.max(1.0));
        BBox {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
        }
    }
}

fn measure(b: &BBox) -> [f32; 4] {
    [
        (b.x1 + b.x2) / 2.0,
        (b.y1 + b.y2) / 2.0,
        b.x2 - b.x1,
        b.y2 - b.y1,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32) -> BBox {
        BBox {
            x1: x,
            y1: 0.0,
            x2: x + 20.0,
            y2: 40.0,
        }
    }

    #[test]
    fn learns_a_constant_velocity_and_predicts_through_a_gap() {
        let mut f = BoxFilter::new(&at(0.0));
        for frame in 1..=20 {
            f.predict();
            f.update(&at(frame as f32 * 5.0));
        }
        // Three frames without observations: it keeps moving at ~5 px/frame.
        for _ in 0..3 {
            f.predict();
        }
        let predicted = f.bbox().x1;
        assert!((predicted - 115.0).abs() < 3.0, "predicted {predicted}");
    }
}
