//! Spatial tiling: overlapping tiles anchored to the absolute pixel grid (not to the render
//! window), with smooth blending ramps, so a pixel's value never depends on which window a host
//! asked for and memory follows the tile size rather than the frame size.
use crate::geometry::Rect;

/// Tiles of `size` pixels every `size - overlap` pixels, starting at absolute 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGrid {
    pub size: i64,
    pub overlap: i64,
}

/// Tile sizes, overlaps and so tile starts are multiples of this, so every tile sees the
/// network's strided layers in the same grid phase (any power-of-two `size_multiple` up to 32
/// divides it) and seams stay invisible.
pub const TILE_ALIGN: i64 = 32;
/// Smallest tile edge the grid accepts; smaller requests are raised to it.
pub const MIN_TILE: i64 = 2 * TILE_ALIGN;

impl TileGrid {
    pub fn new(tile_size: u32) -> Self {
        let size = (tile_size as i64 / TILE_ALIGN * TILE_ALIGN).max(MIN_TILE);
        // About an eighth of the tile: wide enough for a smooth ramp, small enough to stay cheap.
        let overlap = ((size / 8 + TILE_ALIGN / 2) / TILE_ALIGN * TILE_ALIGN)
            .clamp(TILE_ALIGN, 4 * TILE_ALIGN);
        TileGrid { size, overlap }
    }

    fn stride(&self) -> i64 {
        self.size - self.overlap
    }

    /// Clipped extents along one axis of the tiles that meet [a, b), for bounds [lo, hi).
    ///
    /// Only tiles from the last one starting at or before `lo` to the first one reaching `hi` are
    /// used: any other tile's clipped extent lies inside one of those, so it would add cost and
    /// nothing else. Consecutive used tiles overlap by exactly `overlap`.
    fn axis(&self, a: i64, b: i64, lo: i64, hi: i64) -> Vec<(i64, i64)> {
        let s = self.stride();
        let first_used = lo.div_euclid(s);
        let last_used =
            (hi - self.size).div_euclid(s) + i64::from((hi - self.size).rem_euclid(s) != 0);
        let first = first_used.max((a - self.size).div_euclid(s) + 1);
        let last = last_used.max(first_used).min((b - 1).div_euclid(s));
        (first..=last)
            .map(|i| ((i * s).max(lo), (i * s + self.size).min(hi)))
            .filter(|&(x0, x1)| x0 < x1 && x0 < b && x1 > a)
            .collect()
    }

    /// The tiles (clipped to `bounds`) that contribute to pixels of `window`.
    pub fn tiles_for(&self, window: Rect, bounds: Rect) -> Vec<Rect> {
        let w = window.intersect(&bounds);
        if w.is_empty() {
            return Vec::new();
        }
        let xs = self.axis(w.x0, w.x1, bounds.x0, bounds.x1);
        let ys = self.axis(w.y0, w.y1, bounds.y0, bounds.y1);
        let mut out = Vec::with_capacity(xs.len() * ys.len());
        for &(y0, y1) in &ys {
            for &(x0, x1) in &xs {
                out.push(Rect::new(x0, y0, x1, y1));
            }
        }
        out
    }

    /// Blending weight of a pixel at absolute (x, y) inside `tile`: 1 in the interior, a smooth
    /// ramp towards edges that border another tile, never zero.
    pub fn weight(&self, tile: &Rect, bounds: &Rect, x: i64, y: i64) -> f32 {
        self.ramp(x, tile.x0, tile.x1, bounds.x0, bounds.x1)
            * self.ramp(y, tile.y0, tile.y1, bounds.y0, bounds.y1)
    }

    fn ramp(&self, v: i64, t0: i64, t1: i64, lo: i64, hi: i64) -> f32 {
        let edge = |d: i64| {
            let s = (std::f64::consts::FRAC_PI_2 * (d as f64 + 0.5) / self.overlap as f64).sin();
            (s * s) as f32
        };
        let mut w = 1.0;
        if t0 > lo && v - t0 < self.overlap {
            w *= edge(v - t0);
        }
        if t1 < hi && t1 - 1 - v < self.overlap {
            w *= edge(t1 - 1 - v);
        }
        w
    }

    /// Union of the tiles a render of `window` reads: the region to ask the host for.
    pub fn region_needed(&self, window: Rect, bounds: Rect) -> Rect {
        self.tiles_for(window, bounds)
            .iter()
            .fold(Rect::default(), |acc, t| acc.union(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_window_and_stay_in_bounds() {
        let g = TileGrid::new(64);
        let bounds = Rect::new(-10, 5, 300, 170);
        for window in [
            bounds,
            Rect::new(0, 20, 37, 41),
            Rect::new(250, 100, 300, 170),
        ] {
            let tiles = g.tiles_for(window, bounds);
            for y in window.y0..window.y1 {
                for x in window.x0..window.x1 {
                    let n = tiles
                        .iter()
                        .filter(|t| t.x0 <= x && x < t.x1 && t.y0 <= y && y < t.y1)
                        .count();
                    assert!(n >= 1, "pixel ({x},{y}) uncovered in {window:?}");
                }
            }
            for t in &tiles {
                assert!(bounds.contains(t));
                assert!(t.width() <= 64 && t.height() <= 64);
                assert!(
                    t.x0.rem_euclid(TILE_ALIGN) == 0 || t.x0 == bounds.x0,
                    "{t:?} off the tile grid"
                );
            }
        }
    }

    #[test]
    fn tiles_do_not_depend_on_the_window() {
        // Every tile chosen for a sub-window is also a tile of the full frame: same extents.
        let g = TileGrid::new(96);
        let bounds = Rect::new(0, 0, 500, 333);
        let full = g.tiles_for(bounds, bounds);
        for window in [
            Rect::new(13, 7, 200, 90),
            Rect::new(250, 166, 500, 333),
            Rect::new(499, 332, 500, 333),
        ] {
            for t in g.tiles_for(window, bounds) {
                assert!(full.contains(&t), "{t:?} not a full-frame tile");
            }
        }
    }

    #[test]
    fn window_pixels_see_the_same_tiles_as_the_full_frame() {
        let g = TileGrid::new(64);
        let bounds = Rect::new(0, 0, 230, 150);
        let full = g.tiles_for(bounds, bounds);
        let window = Rect::new(100, 60, 140, 99);
        let sub = g.tiles_for(window, bounds);
        for y in window.y0..window.y1 {
            for x in window.x0..window.x1 {
                let holds = |t: &&Rect| t.x0 <= x && x < t.x1 && t.y0 <= y && y < t.y1;
                let a: Vec<_> = full.iter().filter(holds).collect();
                let b: Vec<_> = sub.iter().filter(holds).collect();
                assert_eq!(a, b, "pixel ({x},{y})");
            }
        }
    }

    #[test]
    fn ramps_sum_to_one_in_regular_overlaps() {
        let g = TileGrid::new(64);
        let bounds = Rect::new(0, 0, 1000, 64);
        let tiles = g.tiles_for(bounds, bounds);
        for x in 0..1000 {
            let sum: f32 = tiles
                .iter()
                .filter(|t| t.x0 <= x && x < t.x1)
                .map(|t| g.weight(t, &bounds, x, 10))
                .sum();
            assert!(sum > 0.0);
            if x < 900 {
                assert!((sum - 1.0).abs() < 1e-5, "x={x} sum={sum}");
            }
        }
    }

    #[test]
    fn region_needed_holds_the_window() {
        let g = TileGrid::new(128);
        let bounds = Rect::new(0, 0, 1920, 1080);
        let w = Rect::new(500, 500, 510, 510);
        let r = g.region_needed(w, bounds);
        assert!(r.contains(&w) && bounds.contains(&r));
        assert!(r.width() <= 2 * 128);
    }
}
