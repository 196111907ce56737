//! Pairing colour and depth images by time stamp (approximate time, like message_filters).

use std::collections::VecDeque;

/// A colour image with the depth image taken closest to it, if one came within the slop.
#[derive(Debug, PartialEq)]
pub struct Paired<I, D> {
    pub stamp_ns: i64,
    pub image: I,
    pub depth: Option<D>,
}

/// Approximate time pairing of colour and depth (like message_filters' ApproximateTime, for
/// two streams): each image is paired with the unused depth whose stamp is nearest, within
/// `slop_ns`. An image waits for its depth only while depth is flowing, and never longer than
/// it takes a later depth to prove no match will come, or `max_pending` newer images.
///
/// A live stream's first images can beat the first depth (the two come on separate topics);
/// [`StampPairer::wait_for_first_depth`] holds them for it until the wait proves vain once.
pub struct StampPairer<I, D> {
    slop_ns: i64,
    /// Depth counts as flowing if the newest depth stamp is within this of an image's stamp.
    depth_timeout_ns: i64,
    max_pending: usize,
    depths: VecDeque<(i64, D)>,
    pending: VecDeque<(i64, I)>,
    newest_depth_ns: Option<i64>,
    /// Before any depth came: hold images for one (set by `wait_for_first_depth`, cleared
    /// the first time an image has to go without).
    awaiting_first_depth: bool,
}

const MAX_DEPTHS: usize = 16;

impl<I, D> StampPairer<I, D> {
    pub fn new(slop_ns: i64, depth_timeout_ns: i64, max_pending: usize) -> Self {
        Self {
            slop_ns,
            depth_timeout_ns,
            max_pending: max_pending.max(1),
            depths: VecDeque::new(),
            pending: VecDeque::new(),
            newest_depth_ns: None,
            awaiting_first_depth: false,
        }
    }

    /// Holds the first images for the first depth, up to `max_pending` of them or until
    /// [`StampPairer::flush`]; once an image has gone without, images pass straight through
    /// again until a depth comes (an image-only camera pays this wait once, at start-up).
    pub fn wait_for_first_depth(mut self) -> Self {
        self.awaiting_first_depth = true;
        self
    }

    /// Adds an image; returns the frames that are now complete, oldest first.
    pub fn push_image(&mut self, stamp_ns: i64, image: I) -> Vec<Paired<I, D>> {
        self.pending.push_back((stamp_ns, image));
        self.release()
    }

    /// Adds a depth image; returns the frames that are now complete, oldest first.
    pub fn push_depth(&mut self, stamp_ns: i64, depth: D) -> Vec<Paired<I, D>> {
        self.newest_depth_ns = Some(self.newest_depth_ns.map_or(stamp_ns, |n| n.max(stamp_ns)));
        self.depths.push_back((stamp_ns, depth));
        if self.depths.len() > MAX_DEPTHS {
            self.depths.pop_front();
        }
        self.release()
    }

    /// Tells the pairer that depth flows from `stamp_ns` on (a bag's first depth stamp, known
    /// before its messages are read), so the first images wait for their depth as later ones
    /// do instead of passing without it.
    pub fn expect_depth_from(&mut self, stamp_ns: i64) {
        self.newest_depth_ns = Some(self.newest_depth_ns.map_or(stamp_ns, |n| n.max(stamp_ns)));
    }

    /// Images that still wait for their depth.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Releases every waiting image now, each with its nearest depth within the slop if any
    /// (called when the inputs went quiet, so no later depth is coming).
    pub fn flush(&mut self) -> Vec<Paired<I, D>> {
        let mut out = Vec::new();
        while let Some((stamp_ns, image)) = self.pending.pop_front() {
            let depth = self
                .nearest_depth(stamp_ns)
                .and_then(|i| self.depths.remove(i))
                .map(|(_, d)| d);
            self.awaiting_first_depth &= depth.is_some();
            out.push(Paired {
                stamp_ns,
                image,
                depth,
            });
        }
        out
    }

    /// Index of the depth nearest to `stamp_ns` within the slop.
    fn nearest_depth(&self, stamp_ns: i64) -> Option<usize> {
        self.depths
            .iter()
            .enumerate()
            .map(|(i, (d, _))| (i, (d - stamp_ns).abs()))
            .filter(|(_, gap)| *gap <= self.slop_ns)
            .min_by_key(|(_, gap)| *gap)
            .map(|(i, _)| i)
    }

    fn release(&mut self) -> Vec<Paired<I, D>> {
        let mut out = Vec::new();
        while let Some(&(stamp_ns, _)) = self.pending.front() {
            let best = self.nearest_depth(stamp_ns);
            let depth_flowing = match self.newest_depth_ns {
                Some(newest) => (stamp_ns - newest).abs() <= self.depth_timeout_ns,
                None => self.awaiting_first_depth,
            };
            let no_match_can_come = self
                .newest_depth_ns
                .is_some_and(|newest| newest > stamp_ns + self.slop_ns);
            let depth = match best {
                // A later depth could still be closer; wait for it unless one already passed.
                Some(i) if no_match_can_come || self.depths[i].0 >= stamp_ns => {
                    self.depths.remove(i).map(|(_, d)| d)
                }
                Some(_) if self.pending.len() <= self.max_pending => break,
                None if depth_flowing
                    && !no_match_can_come
                    && self.pending.len() <= self.max_pending =>
                {
                    break
                }
                _ => None,
            };
            self.awaiting_first_depth &= depth.is_some();
            let (stamp_ns, image) = self.pending.pop_front().expect("front exists");
            // Depths older than a released image can no longer match anything.
            self.depths.retain(|(d, _)| *d + self.slop_ns >= stamp_ns);
            out.push(Paired {
                stamp_ns,
                image,
                depth,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn pairer() -> StampPairer<&'static str, &'static str> {
        StampPairer::new(10 * MS, 1000 * MS, 4)
    }

    #[test]
    fn an_expected_depth_stream_holds_the_first_image_for_its_depth() {
        let mut p = pairer();
        p.expect_depth_from(0);
        assert!(p.push_image(0, "a").is_empty());
        let out = p.push_depth(0, "d");
        assert_eq!(
            out,
            vec![Paired {
                stamp_ns: 0,
                image: "a",
                depth: Some("d")
            }]
        );
    }

    #[test]
    fn a_live_stream_holds_its_first_images_for_the_first_depth() {
        let mut p = pairer().wait_for_first_depth();
        // The image beat its depth onto the node: it waits rather than going without.
        assert!(p.push_image(0, "a").is_empty());
        let out = p.push_depth(0, "d");
        assert_eq!(
            out,
            vec![Paired {
                stamp_ns: 0,
                image: "a",
                depth: Some("d")
            }]
        );
    }

    #[test]
    fn an_image_only_stream_waits_for_a_first_depth_once() {
        let mut p = pairer().wait_for_first_depth();
        for i in 0..4 {
            assert!(p.push_image(i * 33 * MS, "i").is_empty());
        }
        // The fifth image overflows max_pending: the oldest goes without, and with it the
        // wait ends; the others follow in order, and later images pass straight through.
        let out = p.push_image(4 * 33 * MS, "i");
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|f| f.depth.is_none()));
        assert!(out.windows(2).all(|w| w[0].stamp_ns < w[1].stamp_ns));
        assert_eq!(p.push_image(5 * 33 * MS, "j").len(), 1);
        // So does a flush of held images (the inputs went quiet).
        let mut p = pairer().wait_for_first_depth();
        assert!(p.push_image(0, "a").is_empty());
        assert_eq!(p.flush().len(), 1);
        assert_eq!(p.push_image(33 * MS, "b").len(), 1);
    }

    #[test]
    fn without_depth_images_pass_straight_through() {
        let mut p = pairer();
        let out = p.push_image(0, "a");
        assert_eq!(
            out,
            vec![Paired {
                stamp_ns: 0,
                image: "a",
                depth: None
            }]
        );
    }

    #[test]
    fn image_waits_for_a_depth_within_the_slop() {
        let mut p = pairer();
        p.push_depth(0, "d0");
        assert_eq!(
            p.push_image(0, "i0"),
            vec![Paired {
                stamp_ns: 0,
                image: "i0",
                depth: Some("d0")
            }]
        );
        // Depth flowing: the next image waits for its depth, which comes 5 ms later.
        assert!(p.push_image(33 * MS, "i1").is_empty());
        assert_eq!(
            p.push_depth(38 * MS, "d1"),
            vec![Paired {
                stamp_ns: 33 * MS,
                image: "i1",
                depth: Some("d1")
            }]
        );
    }

    #[test]
    fn nearest_depth_wins_and_too_far_depth_is_not_used() {
        let mut p = pairer();
        p.push_depth(95 * MS, "far");
        p.push_depth(98 * MS, "near");
        let out = p.push_image(100 * MS, "i");
        // 98 is nearest but earlier than the image: a later, closer depth could come.
        assert!(out.is_empty());
        let out = p.push_depth(130 * MS, "later");
        assert_eq!(
            out,
            vec![Paired {
                stamp_ns: 100 * MS,
                image: "i",
                depth: Some("near")
            }]
        );
        // A depth 30 ms off never pairs.
        let out = p.push_image(160 * MS, "j");
        assert!(out.is_empty());
        let out = p.push_depth(200 * MS, "d");
        assert_eq!(
            out,
            vec![Paired {
                stamp_ns: 160 * MS,
                image: "j",
                depth: None
            }]
        );
    }

    #[test]
    fn waiting_is_bounded_by_max_pending() {
        let mut p = pairer();
        p.push_depth(0, "d");
        let mut released = 0;
        for i in 1..=6 {
            released += p.push_image(i * MS * 100, "i").len();
        }
        assert!(p.pending() <= 4);
        assert_eq!(released + p.pending(), 6);
    }
}
