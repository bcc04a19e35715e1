//! Pixel geometry shared by every layer: the OFX wrapper, the effect, the engine and the command
//! line all speak of regions as this `Rect`.

/// Half-open rectangle in absolute pixel coordinates at the render scale (y grows upward, OFX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    pub const fn new(x0: i64, y0: i64, x1: i64, y1: i64) -> Self {
        Rect { x0, y0, x1, y1 }
    }
    pub fn width(&self) -> i64 {
        (self.x1 - self.x0).max(0)
    }
    pub fn height(&self) -> i64 {
        (self.y1 - self.y0).max(0)
    }
    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }
    pub fn area(&self) -> usize {
        (self.width() * self.height()) as usize
    }
    pub fn intersect(&self, o: &Rect) -> Rect {
        let r = Rect::new(
            self.x0.max(o.x0),
            self.y0.max(o.y0),
            self.x1.min(o.x1),
            self.y1.min(o.y1),
        );
        if r.is_empty() {
            Rect::default()
        } else {
            r
        }
    }
    /// Smallest rectangle holding both; an empty side is ignored.
    pub fn union(&self, o: &Rect) -> Rect {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        Rect::new(
            self.x0.min(o.x0),
            self.y0.min(o.y0),
            self.x1.max(o.x1),
            self.y1.max(o.y1),
        )
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.is_empty() || (o.x0 >= self.x0 && o.y0 >= self.y0 && o.x1 <= self.x1 && o.y1 <= self.y1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersect_union_contains() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, -5, 15, 5);
        assert_eq!(a.intersect(&b), Rect::new(5, 0, 10, 5));
        assert_eq!(a.union(&b), Rect::new(0, -5, 15, 10));
        assert!(a.contains(&Rect::new(1, 1, 2, 2)));
        assert!(!a.contains(&b));
        assert!(a.intersect(&Rect::new(20, 20, 30, 30)).is_empty());
    }
}
