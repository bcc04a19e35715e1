//! The video UNet's hyper-parameters: stored as JSON in every weights file's safetensors metadata
//! (key `vdiff.config`), so that `load` rebuilds exactly the network the weights were trained for.
use serde::{Deserialize, Serialize};

/// Shape of the video UNet. `Default` is the size the built-in model ships with; it was chosen
/// by timing the forward pass on a 2-core CPU (see the `model` module docs for the numbers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Image channels in and out (RGB: 3).
    pub in_channels: usize,
    /// Pixel-unshuffle factor at the input: the network runs at 1/unshuffle resolution with
    /// `in_channels * unshuffle^2` input features, which is what makes full HD affordable.
    pub unshuffle: usize,
    /// Feature channels at each resolution level (level 0 = after the unshuffle); one more
    /// level halves the resolution again.
    pub channels: Vec<usize>,
    /// Residual blocks per level, in the encoder and again in the decoder (the deepest level
    /// runs its blocks once).
    pub res_blocks: Vec<usize>,
    /// Temporal mixing layers (frames k-1, k, k+1) after each level's blocks.
    pub temporal: bool,
    /// Width of the noise-level embedding (even: half sine, half cosine features).
    pub emb_dim: usize,
    /// EDM's sigma_data: standard deviation of the centred training data, in image units.
    pub sigma_data: f64,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 3,
            unshuffle: 2,
            channels: vec![32, 64, 96, 128],
            res_blocks: vec![1, 1, 1, 1],
            temporal: true,
            emb_dim: 64,
            sigma_data: 0.25,
        }
    }
}

/// Largest accepted values: a config beyond these is a corrupt or hostile file, not a model.
const MAX_CHANNELS: usize = 2048;
const MAX_LEVELS: usize = 6;
const MAX_BLOCKS: usize = 16;
const MAX_IN_CHANNELS: usize = 16;

impl UNetConfig {
    /// A small network for unit and integration tests: fast on a CPU at 32x32.
    pub fn tiny() -> Self {
        UNetConfig {
            in_channels: 3,
            unshuffle: 2,
            channels: vec![8, 12, 16],
            res_blocks: vec![1, 1, 1],
            temporal: true,
            emb_dim: 16,
            sigma_data: 0.25,
        }
    }

    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.channels.len()
    }

    /// Image width and height must be multiples of this (the model pads to it):
    /// `unshuffle * 2^(levels-1)`.
    pub fn size_multiple(&self) -> usize {
        self.unshuffle << self.levels().saturating_sub(1)
    }

    /// An upper bound, in pixels, on how far an output pixel can see: pixels farther than this
    /// (in x or y) from an output pixel do not change it. Tiles that overlap by at least this
    /// much agree in their interiors.
    pub fn receptive_radius(&self) -> usize {
        // Each 3x3 convolution at level l widens the field by one level-l cell
        // (unshuffle * 2^l pixels); resampling between levels adds one coarse cell; the
        // unshuffle itself adds one cell.
        let cell = |l: usize| self.unshuffle << l;
        let last = self.levels() - 1;
        let mut r = cell(0); // unshuffle cell
        r += 2 * cell(0); // conv_in and conv_out
        for l in 0..self.levels() {
            let convs = if l == last {
                2 * self.res_blocks[l]
            } else {
                4 * self.res_blocks[l]
            };
            r += convs * cell(l);
            if l < last {
                // strided down conv + up conv (both at level l+1) and the nearest upsample
                r += 3 * cell(l + 1);
            }
        }
        r
    }

    /// Checks that every value makes sense; the message names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.in_channels == 0 || self.in_channels > MAX_IN_CHANNELS {
            return Err(format!(
                "in_channels = {} (expected 1..={MAX_IN_CHANNELS})",
                self.in_channels
            ));
        }
        if ![1, 2, 4, 8].contains(&self.unshuffle) {
            return Err(format!(
                "unshuffle = {} (expected 1, 2, 4 or 8)",
                self.unshuffle
            ));
        }
        if self.channels.is_empty() || self.channels.len() > MAX_LEVELS {
            return Err(format!(
                "channels has {} levels (expected 1..={MAX_LEVELS})",
                self.channels.len()
            ));
        }
        if let Some(c) = self.channels.iter().find(|&&c| c == 0 || c > MAX_CHANNELS) {
            return Err(format!(
                "channels contains {c} (expected 1..={MAX_CHANNELS})"
            ));
        }
        if self.res_blocks.len() != self.channels.len() {
            return Err(format!(
                "res_blocks has {} entries but channels has {} levels",
                self.res_blocks.len(),
                self.channels.len()
            ));
        }
        if let Some(b) = self.res_blocks.iter().find(|&&b| b > MAX_BLOCKS) {
            return Err(format!(
                "res_blocks contains {b} (expected 0..={MAX_BLOCKS})"
            ));
        }
        if self.emb_dim < 2 || self.emb_dim > MAX_CHANNELS || !self.emb_dim.is_multiple_of(2) {
            return Err(format!(
                "emb_dim = {} (expected an even number in 2..={MAX_CHANNELS})",
                self.emb_dim
            ));
        }
        if !(self.sigma_data.is_finite() && self.sigma_data > 0.0 && self.sigma_data <= 10.0) {
            return Err(format!(
                "sigma_data = {} (expected 0 < sigma_data <= 10)",
                self.sigma_data
            ));
        }
        Ok(())
    }

    /// The config as the JSON stored in weights files.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, vectors and bools cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a config from the JSON stored in weights files.
    pub fn from_json(json: &str) -> std::result::Result<Self, String> {
        let cfg: UNetConfig =
            serde_json::from_str(json).map_err(|e| format!("unreadable model config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_tiny_are_valid() {
        assert_eq!(UNetConfig::default().validate(), Ok(()));
        assert_eq!(UNetConfig::tiny().validate(), Ok(()));
        assert!(UNetConfig::default().levels() >= 3);
        assert!(UNetConfig::tiny().levels() >= 3);
    }

    #[test]
    fn json_round_trip() {
        for cfg in [UNetConfig::default(), UNetConfig::tiny()] {
            let json = cfg.to_json();
            assert_eq!(UNetConfig::from_json(&json), Ok(cfg));
        }
        let mut odd = UNetConfig::tiny();
        odd.temporal = false;
        odd.sigma_data = 0.5;
        assert_eq!(UNetConfig::from_json(&odd.to_json()), Ok(odd));
    }

    #[test]
    fn size_multiple_counts_unshuffle_and_levels() {
        let mut cfg = UNetConfig::tiny();
        cfg.unshuffle = 2;
        cfg.channels = vec![4, 4, 4];
        cfg.res_blocks = vec![1, 1, 1];
        assert_eq!(cfg.size_multiple(), 8);
        cfg.unshuffle = 4;
        cfg.channels = vec![4, 4, 4, 4];
        cfg.res_blocks = vec![0, 0, 0, 0];
        assert_eq!(cfg.size_multiple(), 32);
    }

    #[test]
    fn nonsense_is_refused() {
        type Edit = Box<dyn Fn(&mut UNetConfig)>;
        let bad: Vec<(&str, Edit)> = vec![
            ("unshuffle", Box::new(|c| c.unshuffle = 3)),
            ("in_channels", Box::new(|c| c.in_channels = 0)),
            ("channels", Box::new(|c| c.channels = vec![])),
            ("channels", Box::new(|c| c.channels[1] = 0)),
            ("res_blocks", Box::new(|c| c.res_blocks = vec![1])),
            ("res_blocks", Box::new(|c| c.res_blocks[0] = 1000)),
            ("emb_dim", Box::new(|c| c.emb_dim = 7)),
            ("sigma_data", Box::new(|c| c.sigma_data = f64::NAN)),
            ("sigma_data", Box::new(|c| c.sigma_data = -1.0)),
        ];
        for (field, edit) in bad {
            let mut cfg = UNetConfig::tiny();
            edit(&mut cfg);
            let err = cfg.validate().expect_err(field);
            assert!(err.contains(field), "{err} should name {field}");
            assert!(UNetConfig::from_json(&cfg.to_json()).is_err());
        }
    }

    #[test]
    fn unknown_or_malformed_json_is_refused() {
        assert!(UNetConfig::from_json("{").is_err());
        assert!(UNetConfig::from_json("[]").is_err());
        let mut v: serde_json::Value = serde_json::from_str(&UNetConfig::tiny().to_json()).unwrap();
        v["attention"] = serde_json::Value::Bool(true);
        assert!(UNetConfig::from_json(&v.to_string()).is_err());
    }
}
