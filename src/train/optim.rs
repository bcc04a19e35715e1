//! AdamW for the training loop: the exact update of `candle_nn::AdamW` (same operations in the
//! same order, so the same bits), with its moments and step count readable and restorable.
//! `candle_nn::AdamW` keeps them private, which would make `--resume` restart the moments from
//! zero; a checkpoint stores them instead, so a resumed run is bit-identical to an uninterrupted one.
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::optim::{Optimizer, ParamsAdamW};

#[derive(Debug)]
struct Slot {
    var: Var,
    m: Var,
    v: Var,
}

#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: usize,
    params: ParamsAdamW,
}

impl Optimizer for AdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| {
                let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
                let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
                Ok(Slot { var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            step_t: 0,
            params,
        })
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        // Mirrors candle_nn::AdamW::step operation for operation (see the equivalence test).
        self.step_t += 1;
        let p = &self.params;
        let lr_lambda = p.lr * p.weight_decay;
        let scale_m = 1f64 / (1f64 - p.beta1.powi(self.step_t as i32));
        let scale_v = 1f64 / (1f64 - p.beta2.powi(self.step_t as i32));
        for s in &self.slots {
            let theta = &s.var;
            if let Some(g) = grads.get(theta) {
                let next_m = ((s.m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
                let next_v = ((s.v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
                let m_hat = (&next_m * scale_m)?;
                let v_hat = (&next_v * scale_v)?;
                let next_theta = (theta.as_tensor() * (1f64 - lr_lambda))?;
                let adjusted = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
                let next_theta = (next_theta - (adjusted * p.lr)?)?;
                s.m.set(&next_m)?;
                s.v.set(&next_v)?;
                theta.set(&next_theta)?;
            }
        }
        Ok(())
    }
}

impl AdamW {
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    /// Number of updates applied so far (drives the bias correction).
    pub fn step_t(&self) -> usize {
        self.step_t
    }

    /// First and second moments, in the order of the variables given to `new`.
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        self.slots
            .iter()
            .map(|s| (s.m.as_tensor().clone(), s.v.as_tensor().clone()))
            .collect()
    }

    /// Restores the state saved by `step_t` and `moments` (same variable order and shapes).
    pub fn restore(&mut self, step_t: usize, moments: &[(Tensor, Tensor)]) -> Result<()> {
        if moments.len() != self.slots.len() {
            candle_core::bail!(
                "optimizer state holds {} tensors, the model {}",
                moments.len(),
                self.slots.len()
            );
        }
        for (s, (m, v)) in self.slots.iter().zip(moments) {
            s.m.set(m)?;
            s.v.set(v)?;
        }
        self.step_t = step_t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A small least-squares problem; returns the weights after `n` steps of `opt`.
    fn run<O: Optimizer<Config = ParamsAdamW>>(n: usize) -> Vec<f32> {
        let dev = Device::Cpu;
        let w = Var::from_vec(
            (0..6).map(|i| i as f32 * 0.1 - 0.2).collect::<Vec<_>>(),
            (2, 3),
            &dev,
        )
        .unwrap();
        let x = Tensor::from_vec(
            (0..12)
                .map(|i| ((i * 7) % 5) as f32 - 2.0)
                .collect::<Vec<_>>(),
            (3, 4),
            &dev,
        )
        .unwrap();
        let y = Tensor::from_vec(
            (0..8).map(|i| (i as f32).sin()).collect::<Vec<_>>(),
            (2, 4),
            &dev,
        )
        .unwrap();
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = O::new(vec![w.clone()], params).unwrap();
        for _ in 0..n {
            let loss = (w.as_tensor().matmul(&x).unwrap() - &y)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap();
            opt.backward_step(&loss).unwrap();
        }
        w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn matches_candle_adamw_bit_for_bit() {
        let ours = run::<AdamW>(25);
        let theirs = run::<candle_nn::AdamW>(25);
        assert_eq!(ours, theirs);
        assert_ne!(ours, run::<AdamW>(24));
    }

    #[test]
    fn restoring_state_continues_exactly() {
        let dev = Device::Cpu;
        let target = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let make = || Var::from_vec(vec![0.0f32, 0.0, 0.0], 3, &dev).unwrap();
        let loss = |w: &Var| {
            (w.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let params = ParamsAdamW {
            lr: 0.1,
            ..Default::default()
        };
        // Uninterrupted: 10 steps.
        let w1 = make();
        let mut o1 = AdamW::new(vec![w1.clone()], params.clone()).unwrap();
        for _ in 0..10 {
            o1.backward_step(&loss(&w1)).unwrap();
        }
        // Interrupted after 4: copy weights and state into fresh objects, then 6 more.
        let w2 = make();
        let mut o2 = AdamW::new(vec![w2.clone()], params.clone()).unwrap();
        for _ in 0..4 {
            o2.backward_step(&loss(&w2)).unwrap();
        }
        let (st, mom, wt) = (o2.step_t(), o2.moments(), w2.as_tensor().copy().unwrap());
        let mom: Vec<(Tensor, Tensor)> = mom
            .iter()
            .map(|(m, v)| (m.copy().unwrap(), v.copy().unwrap()))
            .collect();
        let w3 = Var::from_tensor(&wt).unwrap();
        let mut o3 = AdamW::new(vec![w3.clone()], params).unwrap();
        o3.restore(st, &mom).unwrap();
        for _ in 0..6 {
            o3.backward_step(&loss(&w3)).unwrap();
        }
        let a: Vec<f32> = w1.as_tensor().to_vec1().unwrap();
        let b: Vec<f32> = w3.as_tensor().to_vec1().unwrap();
        assert_eq!(a, b);
        assert_eq!(o3.step_t(), 10);
        assert!(o3.restore(1, &[]).is_err());
    }
}
