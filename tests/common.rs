//! Shared helpers for the integration tests. They fail with full diagnostics: where two buffers
//! first differ, by how much, and how many values are affected.
#![allow(dead_code)]

use std::path::PathBuf;

/// A scratch directory unique to this process and `name` (created empty).
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("vdiff-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

/// Asserts two pixel buffers are byte-identical. `pixel_bytes` and `width` locate the first
/// difference as (x, y) relative to the buffers' origin.
pub fn assert_bytes_eq(what: &str, a: &[u8], b: &[u8], pixel_bytes: usize, width: usize) {
    if a == b {
        return;
    }
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: buffers differ in size ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    let first = diffs[0];
    let px = first / pixel_bytes.max(1);
    let (x, y) = (px % width.max(1), px / width.max(1));
    let max = diffs
        .iter()
        .map(|&i| (a[i] as i32 - b[i] as i32).abs())
        .max()
        .unwrap_or(0);
    panic!(
        "{what}: {} of {} bytes differ; first at byte {first} (pixel x={x}, y={y} from the origin): {} vs {}; largest byte difference {max}",
        diffs.len(),
        a.len(),
        a[first],
        b[first]
    );
}

/// Asserts every value is finite, naming the first offender.
pub fn assert_all_finite(what: &str, values: impl IntoIterator<Item = f32>) {
    let mut bad = 0usize;
    let mut first = None;
    for (i, v) in values.into_iter().enumerate() {
        if !v.is_finite() {
            bad += 1;
            first.get_or_insert((i, v));
        }
    }
    if let Some((i, v)) = first {
        panic!("{what}: {bad} non-finite values; first is {v} at index {i}");
    }
}

/// Mean absolute difference of two equally long float slices.
pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "mean_abs_diff of slices of different lengths"
    );
    if a.is_empty() {
        return 0.0;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

/// A fixed pseudo-random permutation of `0..n` (test orderings must be reproducible).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}
