//! Minimum-cost assignment (the Hungarian method, O(n³)) for matching tracks to
//! detections, with a cost ceiling above which a pair is never matched.

/// Pairs `(row, column)` minimising the total cost, using only pairs with cost `<= max_cost`.
/// `cost` is row-major, `rows x cols`.
pub fn assign(cost: &[f32], rows: usize, cols: usize, max_cost: f32) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Square matrix; pairs over the ceiling (and padding) cost more than any real matching,
    // so they are chosen only when nothing else is possible, and then discarded.
    let n = rows.max(cols);
    let forbidden = 1.0e6f64;
    let c = |i: usize, j: usize| -> f64 {
        if i < rows && j < cols {
            let v = f64::from(cost[i * cols + j]);
            if v <= f64::from(max_cost) {
                v
            } else {
                forbidden
            }
        } else {
            forbidden
        }
    };
    // Potentials and the matching, 1-based as in the classic formulation.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=n {
                if !used[j] {
                    let cur = c(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs = Vec::new();
    for j in 1..=n {
        let i = p[j];
        if i >= 1 && i <= rows && j <= cols && cost[(i - 1) * cols + (j - 1)] <= max_cost {
            pairs.push((i - 1, j - 1));
        }
    }
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cheapest_matching_not_the_greedy_one() {
        // Greedy would take (0,0)=0.1 then (1,1)=0.9; the optimum is (0,1)+(1,0) = 0.4.
        let cost = [0.1, 0.2, 0.2, 0.9];
        assert_eq!(assign(&cost, 2, 2, 1.0), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn respects_the_ceiling_and_rectangular_shapes() {
        let cost = [0.5, 0.95, 0.3];
        assert_eq!(assign(&cost, 1, 3, 0.8), vec![(0, 2)]);
        let cost = [0.9, 0.95];
        assert!(assign(&cost, 2, 1, 0.8).is_empty());
        assert!(assign(&[], 0, 3, 0.8).is_empty());
    }
}
