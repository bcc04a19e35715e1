//! "Analyze Noise": estimates a frame's noise sigma (0..1 units) from the frame alone, so the
//! artist starts from a measured Noise Level rather than a guess.
use super::image::RgbImage;

/// Block edge for local estimates: small enough to find flat areas, big enough to average.
const BLOCK: usize = 16;

/// Immerkær's fast noise estimate (a Laplacian-difference filter cancels smooth image content),
/// taken per block and per channel; the lower quartile of blocks is used so texture and edges,
/// which inflate the estimate, are ignored, and its known bias under pure noise is divided out.
///
/// Noise clipped at black or white (every 8- or 16-bit file) is weaker near the ends of the
/// range, and the lower quartile would pick exactly those blocks: a dark scene read as half its
/// noise. So the quartile is taken again over the blocks whose mean lies more than
/// `CLIP_MARGIN` estimates from either end, until the estimate settles.
pub fn estimate_noise(img: &RgbImage) -> f32 {
    let (w, h) = (img.rect.width() as usize, img.rect.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let px = |x: usize, y: usize, c: usize| {
        let v = img.data[(y * w + x) * 3 + c];
        if v.is_finite() {
            v as f64
        } else {
            0.0
        }
    };
    let mut blocks = Vec::new();
    let (bw, bh) = (BLOCK.min(w - 2), BLOCK.min(h - 2));
    for c in 0..3 {
        for by in (1..h - 1).step_by(bh) {
            for bx in (1..w - 1).step_by(bw) {
                let (ex, ey) = ((bx + bw).min(w - 1), (by + bh).min(h - 1));
                if (ex - bx) * (ey - by) < bw * bh / 2 {
                    continue;
                }
                let mut sum = 0.0;
                for y in by..ey {
                    for x in bx..ex {
                        let l = px(x - 1, y - 1, c) - 2.0 * px(x, y - 1, c) + px(x + 1, y - 1, c)
                            - 2.0 * px(x - 1, y, c)
                            + 4.0 * px(x, y, c)
                            - 2.0 * px(x + 1, y, c)
                            + px(x - 1, y + 1, c)
                            - 2.0 * px(x, y + 1, c)
                            + px(x + 1, y + 1, c);
                        sum += l.abs();
                    }
                }
                let n = ((ex - bx) * (ey - by)) as f64;
                let mean = (by..ey)
                    .flat_map(|y| (bx..ex).map(move |x| (x, y)))
                    .map(|(x, y)| px(x, y, c))
                    .sum::<f64>()
                    / n;
                blocks.push(Block {
                    sigma: (std::f64::consts::FRAC_PI_2).sqrt() / 6.0 * sum / n,
                    n,
                    mean,
                });
            }
        }
    }
    let Some(mut est) = lower_quartile(&mut blocks) else {
        return 0.0;
    };
    for _ in 0..MAX_ROUNDS {
        let (lo, hi) = (CLIP_MARGIN * est, 1.0 - CLIP_MARGIN * est);
        let mut inside: Vec<Block> = blocks
            .iter()
            .filter(|b| b.mean > lo && b.mean < hi)
            .copied()
            .collect();
        if inside.len() < MIN_BLOCKS {
            break;
        }
        let Some(next) = lower_quartile(&mut inside) else {
            break;
        };
        let settled = (next - est).abs() <= 1e-3 * est;
        est = next;
        if settled {
            break;
        }
    }
    est as f32
}

/// Blocks whose mean lies closer than this many noise estimates to 0 or 1 are left out: there
/// clipping removes a visible part of the noise.
const CLIP_MARGIN: f64 = 2.0;
/// Fewest blocks an estimate is taken from once clipped blocks are left out; with fewer (a
/// frame almost all black or white), the estimate over every block stands.
const MIN_BLOCKS: usize = 16;
/// Leaving out blocks raises the estimate, which widens the margin: a few rounds settle it.
const MAX_ROUNDS: usize = 8;

#[derive(Clone, Copy)]
struct Block {
    /// Immerkær's estimate over the block.
    sigma: f64,
    /// Pixels in the block.
    n: f64,
    /// Mean value of the block.
    mean: f64,
}

/// The lower quartile of the blocks' estimates, with its bias under pure noise divided out.
fn lower_quartile(blocks: &mut [Block]) -> Option<f64> {
    if blocks.is_empty() {
        return None;
    }
    blocks.sort_by(|a, b| a.sigma.total_cmp(&b.sigma));
    let Block { sigma: q, n, .. } = blocks[blocks.len() / 4];
    // Lower quartile of a mean of n half-normal values sits 0.674 standard errors below its mean.
    let rel_sd = ((std::f64::consts::FRAC_PI_2 - 1.0) / n).sqrt();
    Some(if blocks.len() >= 4 {
        q / (1.0 - 0.674 * rel_sd)
    } else {
        q
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;
    use crate::sampling::noise::gaussian;

    fn scene(w: i64, h: i64, sigma: f32, textured: bool) -> RgbImage {
        let mut img = RgbImage::new(Rect::new(0, 0, w, h));
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let base = 0.2 + 0.5 * (x as f32 / w as f32) + 0.1 * c as f32;
                    // Texture only in the left third: flat blocks elsewhere must win.
                    let tex = if textured && x < w / 3 {
                        0.2 * ((x as f32 * 1.3).sin() * (y as f32 * 0.9).cos())
                    } else {
                        0.0
                    };
                    let i = img.offset(x, y) + c as usize;
                    img.data[i] = base + tex + sigma * gaussian(3, 0, c, x, y, 0);
                }
            }
        }
        img
    }

    #[test]
    fn finds_the_noise_of_white_gaussian_noise() {
        for sigma in [0.01f32, 0.04, 0.1, 0.2] {
            let est = estimate_noise(&scene(256, 192, sigma, false));
            assert!(
                (est / sigma - 1.0).abs() < 0.1,
                "sigma {sigma}: estimated {est}"
            );
        }
    }

    #[test]
    fn texture_does_not_inflate_the_estimate() {
        let est = estimate_noise(&scene(256, 192, 0.04, true));
        assert!((est / 0.04 - 1.0).abs() < 0.15, "estimated {est}");
    }

    #[test]
    fn clipped_noise_of_a_dark_scene_is_not_underestimated() {
        // Three quarters of the frame near black, a quarter mid-grey; noise clipped at 0 and 1.
        for sigma in [0.04f32, 0.1, 0.2] {
            let (w, h) = (256i64, 192i64);
            let mut img = RgbImage::new(Rect::new(0, 0, w, h));
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let base = if x < 3 * w / 4 { 0.03 } else { 0.5 };
                        let i = img.offset(x, y) + c as usize;
                        let v = base + sigma * gaussian(5, 0, c, x, y, 0);
                        img.data[i] = v.clamp(0.0, 1.0);
                    }
                }
            }
            let est = estimate_noise(&img);
            assert!(
                (est / sigma - 1.0).abs() < 0.1,
                "sigma {sigma}: estimated {est}"
            );
        }
    }

    #[test]
    fn clean_and_tiny_images_give_small_values() {
        assert!(estimate_noise(&scene(128, 128, 0.0, false)) < 1e-3);
        assert_eq!(estimate_noise(&RgbImage::new(Rect::new(0, 0, 2, 2))), 0.0);
    }
}
