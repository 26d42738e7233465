//! Minimum-cost assignment for matching tracks to detections, with a cost ceiling above
//! which a pair is never matched.
//!
//! Only pairs under the ceiling (boxes that overlap enough) can match, so the problem
//! splits into independent groups of tracks and detections linked by such pairs. Each
//! group is solved exactly (the Hungarian method, O(n³) in the group's size); a group
//! larger than [`EXACT_LIMIT`] (hundreds of boxes piled on each other, which no camera
//! shows but a posted message can) is matched greedily, cheapest pair first, so no input
//! can stall a tracker.

/// Largest group solved exactly.
pub const EXACT_LIMIT: usize = 128;

/// Pairs `(row, column)` minimising the total cost, using only pairs with cost `<= max_cost`.
/// `cost` is row-major, `rows x cols`. Sorted.
pub fn assign(cost: &[f32], rows: usize, cols: usize, max_cost: f32) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Union-find over rows (0..rows) and columns (rows..rows + cols), joined by allowed pairs.
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut edges = Vec::new();
    for i in 0..rows {
        for j in 0..cols {
            if cost[i * cols + j] <= max_cost {
                edges.push((i, j));
                let (a, b) = (root(&mut parent, i), root(&mut parent, rows + j));
                if a != b {
                    parent[a] = b;
                }
            }
        }
    }
    let mut groups: std::collections::HashMap<usize, (Vec<usize>, Vec<usize>)> =
        std::collections::HashMap::new();
    let (mut row_seen, mut col_seen) = (vec![false; rows], vec![false; cols]);
    for &(i, j) in &edges {
        let g = groups.entry(root(&mut parent, i)).or_default();
        if !std::mem::replace(&mut row_seen[i], true) {
            g.0.push(i);
        }
        if !std::mem::replace(&mut col_seen[j], true) {
            g.1.push(j);
        }
    }
    let mut pairs = Vec::new();
    for (group_rows, group_cols) in groups.into_values() {
        let (r, c) = (group_rows.len(), group_cols.len());
        let sub = |a: usize, b: usize| cost[group_rows[a] * cols + group_cols[b]];
        let matched = if r.max(c) <= EXACT_LIMIT {
            let mut m = Vec::with_capacity(r * c);
            for a in 0..r {
                for b in 0..c {
                    m.push(sub(a, b));
                }
            }
            hungarian(&m, r, c, max_cost)
        } else {
            greedy(r, c, max_cost, sub)
        };
        pairs.extend(
            matched
                .into_iter()
                .map(|(a, b)| (group_rows[a], group_cols[b])),
        );
    }
    pairs.sort_unstable();
    pairs
}

/// Cheapest allowed pair first, each row and column used once.
fn greedy(
    rows: usize,
    cols: usize,
    max_cost: f32,
    cost: impl Fn(usize, usize) -> f32,
) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(f32, usize, usize)> = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i, j)))
        .map(|(i, j)| (cost(i, j), i, j))
        .filter(|(c, _, _)| *c <= max_cost)
        .collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut row_used, mut col_used) = (vec![false; rows], vec![false; cols]);
    let mut pairs = Vec::new();
    for (_, i, j) in candidates {
        if !row_used[i] && !col_used[j] {
            row_used[i] = true;
            col_used[j] = true;
            pairs.push((i, j));
        }
    }
    pairs
}

/// The exact minimum-cost matching of a `rows x cols` matrix.
fn hungarian(cost: &[f32], rows: usize, cols: usize, max_cost: f32) -> Vec<(usize, usize)> {
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

    #[test]
    fn separate_groups_are_solved_apart_with_the_same_answer() {
        // Two 2x2 problems far apart (everything across them forbidden) in one 4x4 matrix.
        let f = 1.0;
        let cost = [
            0.1, 0.2, f, f, //
            0.2, 0.9, f, f, //
            f, f, 0.3, 0.1, //
            f, f, 0.1, 0.3,
        ];
        assert_eq!(
            assign(&cost, 4, 4, 0.8),
            vec![(0, 1), (1, 0), (2, 3), (3, 2)]
        );
    }

    #[test]
    fn a_pile_of_boxes_beyond_the_exact_limit_is_matched_at_once() {
        // 1000 rows and columns that all overlap: one group, matched greedily.
        let n = 1000;
        let cost: Vec<f32> = (0..n * n)
            .map(|k| if k / n == k % n { 0.0 } else { 0.5 })
            .collect();
        let pairs = assign(&cost, n, n, 0.8);
        assert_eq!(pairs.len(), n);
        assert!(
            pairs.iter().all(|(i, j)| i == j),
            "the zero-cost diagonal wins"
        );
    }
}
