use super::*;
use crate::{Encoding, Engine, Tensor};

fn mlp(loss: Loss, optimizer: Optimizer, layers: Vec<usize>) -> Trainer {
    Trainer::new(TrainerConfig {
        learning_rate: 0.05,
        seed: 7,
        ..TrainerConfig::new(layers, loss, optimizer)
    })
    .unwrap()
}

/// Two noisy blobs per class around distinct centres, in 4-D.
fn blobs(rows: usize, classes: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix(3);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let class = r % classes;
        for d in 0..4 {
            let centre = if d % classes == class { 2.0 } else { -1.0 };
            x.push(centre + rng.next_f32() - 0.5);
        }
        y.push(class as f32);
    }
    (x, y)
}

#[test]
fn gradients_match_finite_differences() {
    for loss in [Loss::CrossEntropy, Loss::Mse] {
        let t = mlp(loss, Optimizer::adam(), vec![4, 5, 3]);
        let (x, classes) = blobs(6, 3);
        let y = match loss {
            Loss::CrossEntropy => classes,
            Loss::Mse => (0..18).map(|i| (i as f32 * 0.37).sin()).collect(),
        };
        let (_, grads) = t.gradients(&x, &y, 6).unwrap();
        let loss_with = |l: usize, i: usize, bias: bool, delta: f32| {
            let mut t = t.clone();
            let p = if bias {
                &mut t.layers[l].b
            } else {
                &mut t.layers[l].w
            };
            p[i] += delta;
            t.evaluate(&x, &y).unwrap().loss
        };
        for (l, g) in grads.iter().enumerate() {
            for (bias, values) in [(false, &g.w), (true, &g.b)] {
                for (i, &analytic) in values.iter().enumerate().step_by(3) {
                    let h = 1e-2;
                    let numeric =
                        (loss_with(l, i, bias, h) - loss_with(l, i, bias, -h)) / (2.0 * h);
                    assert!(
                        (numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(),
                        "{loss:?} layer {l} {} {i}: numeric {numeric} analytic {analytic}",
                        if bias { "bias" } else { "weight" }
                    );
                }
            }
        }
    }
}

#[test]
fn learns_a_separable_task_with_each_optimizer() {
    let (x, y) = blobs(60, 3);
    for optimizer in [Optimizer::adam(), Optimizer::Sgd { momentum: 0.9 }] {
        let mut t = mlp(Loss::CrossEntropy, optimizer, vec![4, 8, 3]);
        let before = t.evaluate(&x, &y).unwrap();
        for _ in 0..150 {
            t.step(&x, &y).unwrap();
        }
        let after = t.evaluate(&x, &y).unwrap();
        assert!(
            after.loss < before.loss * 0.2,
            "{optimizer:?}: {before:?} → {after:?}"
        );
        assert_eq!(after.accuracy, Some(1.0), "{optimizer:?}");
        assert_eq!(t.steps(), 150);
    }
}

/// Fails (rather than skips) without a GPU: `scripts/install-vulkan.sh`
/// gives CI one (llvmpipe).
#[test]
fn the_gpu_and_the_cpu_give_the_same_loss_curve() {
    let (x, y) = blobs(48, 3);
    let run = |target| {
        let mut t = Trainer::new(TrainerConfig {
            target,
            ..mlp(Loss::CrossEntropy, Optimizer::adam(), vec![4, 16, 3]).config
        })
        .unwrap();
        let losses: Vec<f32> = (0..40).map(|_| t.step(&x, &y).unwrap()).collect();
        (t.on_gpu(), losses, t.predict(&x).unwrap())
    };
    let (cpu_on_gpu, cpu, cpu_out) = run(Target::Cpu);
    let (on_gpu, gpu, gpu_out) = run(Target::Gpu);
    assert!(!cpu_on_gpu);
    assert!(on_gpu, "no GPU adapter: run scripts/install-vulkan.sh");
    assert!(gpu[39] < gpu[0] * 0.2, "{gpu:?}");
    for (c, g) in cpu.iter().zip(&gpu).chain(cpu_out.iter().zip(&gpu_out)) {
        assert!(
            (c - g).abs() <= 1e-4 * (1.0 + c.abs()),
            "cpu {cpu:?}\ngpu {gpu:?}"
        );
    }
}

#[test]
fn fits_a_regression_with_mse() {
    // y = 2·x0 − x1 + 0.5, a linear head can fit it exactly.
    let x: Vec<f32> = (0..40).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
    let y: Vec<f32> = x.chunks(2).map(|r| 2.0 * r[0] - r[1] + 0.5).collect();
    let mut t = mlp(Loss::Mse, Optimizer::adam(), vec![2, 1]);
    for _ in 0..600 {
        t.step(&x, &y).unwrap();
    }
    let eval = t.evaluate(&x, &y).unwrap();
    assert!(eval.loss < 1e-3 && eval.accuracy.is_none(), "{eval:?}");
}

#[test]
fn warmup_then_cosine_schedule() {
    let mut t = Trainer::new(TrainerConfig {
        learning_rate: 1.0,
        warmup_steps: 4,
        total_steps: Some(8),
        ..TrainerConfig::new(
            vec![2, 2],
            Loss::CrossEntropy,
            Optimizer::Sgd { momentum: 0.0 },
        )
    })
    .unwrap();
    let mut rates = Vec::new();
    for _ in 0..10 {
        rates.push(t.learning_rate());
        t.step(&[1.0, 0.0], &[0.0]).unwrap();
    }
    let want = [
        0.25, 0.5, 0.75, 1.0, 1.0, 0.853_553, 0.5, 0.146_446, 0.0, 0.0,
    ];
    for (got, want) in rates.iter().zip(want) {
        assert!((got - want).abs() < 1e-5, "{rates:?}");
    }
}

#[test]
fn a_restored_checkpoint_continues_the_same_run() {
    let (x, y) = blobs(30, 3);
    let mut straight = mlp(Loss::CrossEntropy, Optimizer::adam(), vec![4, 6, 3]);
    let mut interrupted = straight.clone();
    for _ in 0..10 {
        straight.step(&x, &y).unwrap();
        interrupted.step(&x, &y).unwrap();
    }
    let mut resumed = Trainer::restore(&interrupted.save()).unwrap();
    drop(interrupted);
    for _ in 0..10 {
        assert_eq!(
            straight.step(&x, &y).unwrap(),
            resumed.step(&x, &y).unwrap()
        );
    }
    assert_eq!(straight.predict(&x).unwrap(), resumed.predict(&x).unwrap());
    assert_eq!(resumed.steps(), 20);
    assert_eq!(resumed.config(), straight.config());
}

#[test]
fn the_exported_model_serves_the_same_outputs() {
    let (x, y) = blobs(5, 3);
    let mut t = mlp(Loss::CrossEntropy, Optimizer::adam(), vec![4, 6, 3]);
    t.step(&x, &y).unwrap();
    let onnx = t.export_onnx();
    let info = crate::inspect(&onnx, Encoding::Onnx).unwrap();
    let crate::ModelInfo::Onnx(info) = info else {
        panic!("not onnx")
    };
    assert_eq!(info.inputs, ["features"]);
    assert_eq!(info.outputs, ["logits", "probabilities"]);
    let model = Engine::default()
        .load(&onnx, Encoding::Onnx, Target::Cpu)
        .unwrap();
    let out = model
        .session()
        .compute(&[("features".into(), Tensor::from_f32(vec![5, 4], &x))])
        .unwrap();
    let logits = out[0].1.to_f32().unwrap();
    for (a, b) in logits.iter().zip(t.predict(&x).unwrap()) {
        assert!((a - b).abs() < 1e-5);
    }
    let probs = out[1].1.to_f32().unwrap();
    for row in probs.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn mistakes_are_invalid_argument_errors_that_say_what() {
    let cases: [(TrainerConfig, &str); 6] = [
        (
            TrainerConfig::new(vec![4], Loss::Mse, Optimizer::adam()),
            "at least an input",
        ),
        (
            TrainerConfig::new(vec![4, 0], Loss::Mse, Optimizer::adam()),
            "width 0",
        ),
        (
            TrainerConfig::new(vec![4, 1], Loss::CrossEntropy, Optimizer::adam()),
            "at least 2 outputs",
        ),
        (
            TrainerConfig {
                learning_rate: -1.0,
                ..TrainerConfig::new(vec![4, 2], Loss::Mse, Optimizer::adam())
            },
            "learning-rate",
        ),
        (
            TrainerConfig::new(vec![4, 2], Loss::Mse, Optimizer::Sgd { momentum: 1.5 }),
            "momentum",
        ),
        (
            TrainerConfig {
                warmup_steps: 10,
                total_steps: Some(5),
                ..TrainerConfig::new(vec![4, 2], Loss::Mse, Optimizer::adam())
            },
            "total-steps",
        ),
    ];
    for (config, says) in cases {
        let err = Trainer::new(config).unwrap_err();
        assert_eq!(err.kind, NnErrorKind::InvalidArgument);
        assert!(err.message.contains(says), "{err} should say {says}");
    }
    let mut t = mlp(Loss::CrossEntropy, Optimizer::adam(), vec![4, 3]);
    for (x, y, says) in [
        (&[1.0; 6][..], &[0.0][..], "not whole rows of 4"),
        (&[1.0; 8], &[0.0], "2 rows"),
        (&[1.0; 4], &[3.0], "not a class index in 0..3"),
        (&[1.0; 4], &[0.5], "not a class index"),
        (&[f32::NAN; 4], &[0.0], "NaN"),
    ] {
        let err = t.step(x, y).unwrap_err();
        assert!(err.message.contains(says), "{err} should say {says}");
    }
    assert_eq!(t.steps(), 0);
    let saved = t.save();
    for bad in [
        &b"nope"[..],
        &saved[..saved.len() - 1],
        &[saved.as_slice(), b"x"].concat(),
    ] {
        let err = Trainer::restore(bad).unwrap_err();
        assert!(err.message.contains("checkpoint"), "{err}");
    }
}
