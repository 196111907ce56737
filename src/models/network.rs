//! `Network`: any network of the zoo behind one enum, built from its architecture, with one
//! `forward` for all.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{
    Architecture, DepthNet, GraspNet, InceptionNet, LeNet5, Mlp, PoseNet, ResNet, UNet, Vgg,
};
use crate::nn::Trace;

/// Any network of the zoo, built from its [`Architecture`]; one forward for all of them.
#[derive(Clone, Debug)]
pub enum Network {
    Mlp(Mlp),
    Lenet5(LeNet5),
    Vgg(Vgg),
    InceptionNet(InceptionNet),
    Resnet(ResNet),
    Unet(UNet),
    Depth(DepthNet),
    Posenet(PoseNet),
    GraspQuality(GraspNet),
}

impl Network {
    pub fn new(architecture: &Architecture, vb: VarBuilder) -> Result<Self> {
        Ok(match architecture {
            Architecture::Mlp(cfg) => Self::Mlp(Mlp::new(cfg, vb)?),
            Architecture::Lenet5(cfg) => Self::Lenet5(LeNet5::new(cfg, vb)?),
            Architecture::Vgg(cfg) => Self::Vgg(Vgg::new(cfg, vb)?),
            Architecture::InceptionNet(cfg) => Self::InceptionNet(InceptionNet::new(cfg, vb)?),
            Architecture::Resnet(cfg) => Self::Resnet(ResNet::new(cfg, vb)?),
            Architecture::Unet(cfg) => Self::Unet(UNet::new(cfg, vb)?),
            Architecture::Depth(cfg) => Self::Depth(DepthNet::new(cfg, vb)?),
            Architecture::Posenet(cfg) => Self::Posenet(PoseNet::new(cfg, vb)?),
            Architecture::GraspQuality(cfg) => Self::GraspQuality(GraspNet::new(cfg, vb)?),
        })
    }

    /// How many input tensors `forward_t` takes: 2 for the grasp network (depth patch and
    /// gripper depth), 1 for the others (the image).
    pub fn input_count(&self) -> usize {
        match self {
            Self::GraspQuality(_) => 2,
            _ => 1,
        }
    }

    /// Restarts every dropout layer's mask generator from `seed`, so that a run resumed at an
    /// epoch draws the same masks as an uninterrupted one. Networks without dropout ignore it.
    pub fn reseed_dropout(&self, seed: u64) {
        match self {
            Self::Mlp(net) => net.reseed_dropout(seed),
            Self::Vgg(net) => net.reseed_dropout(seed),
            Self::InceptionNet(net) => net.reseed_dropout(seed),
            Self::Posenet(net) => net.reseed_dropout(seed),
            Self::GraspQuality(net) => net.reseed_dropout(seed),
            Self::Lenet5(_) | Self::Resnet(_) | Self::Unet(_) | Self::Depth(_) => {}
        }
    }

    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_traced(inputs, train, &mut Trace::off())
    }

    /// # Shapes
    /// See each network's `forward_traced`.
    pub fn forward_traced(
        &self,
        inputs: &[Tensor],
        train: bool,
        trace: &mut Trace,
    ) -> Result<Tensor> {
        if inputs.len() != self.input_count() {
            candle_core::bail!(
                "this network takes {} input tensor(s), got {}",
                self.input_count(),
                inputs.len()
            );
        }
        let x = &inputs[0];
        match self {
            Self::Mlp(net) => net.forward_traced(x, train, trace),
            Self::Lenet5(net) => net.forward_traced(x, train, trace),
            Self::Vgg(net) => net.forward_traced(x, train, trace),
            Self::InceptionNet(net) => net.forward_traced(x, train, trace),
            Self::Resnet(net) => net.forward_traced(x, train, trace),
            Self::Unet(net) => net.forward_traced(x, train, trace),
            Self::Depth(net) => net.forward_traced(x, train, trace),
            Self::Posenet(net) => net.forward_traced(x, train, trace),
            Self::GraspQuality(net) => net.forward_traced(x, &inputs[1], train, trace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{
        assign_weights_strict, DepthNetConfig, GraspNetConfig, InceptionNetConfig, LeNet5Config,
        MlpConfig, PoseNetConfig, ResNetConfig, Stem, UNetConfig, VggConfig,
    };
    use crate::nn::{BlockKind, InceptionSpec};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// Small instances of every network with an input and the output shape they promise.
    fn contracts() -> Vec<(&'static str, Architecture, Vec<Vec<usize>>, Vec<usize>)> {
        let s = InceptionSpec::new(2, 2, 3, 1, 2, 2);
        vec![
            (
                "mlp",
                Architecture::Mlp(MlpConfig::digits16()),
                vec![vec![3, 1, 16, 16]],
                vec![3, 10],
            ),
            (
                "lenet5",
                Architecture::Lenet5(LeNet5Config::classic()),
                vec![vec![2, 1, 32, 32]],
                vec![2, 10],
            ),
            (
                "vgg",
                Architecture::Vgg(VggConfig {
                    blocks: vec![vec![4], vec![8, 8]],
                    classifier: vec![16],
                    ..VggConfig::vgg16(3, 7, [8, 12])
                }),
                vec![vec![2, 3, 8, 12]],
                vec![2, 7],
            ),
            (
                "inception",
                Architecture::InceptionNet(InceptionNetConfig {
                    stem_channels: [4, 4, 6],
                    stages: vec![vec![s], vec![s, s]],
                    ..InceptionNetConfig::googlenet(3, 5)
                }),
                vec![vec![1, 3, 40, 36]],
                vec![1, 5],
            ),
            (
                "resnet",
                Architecture::Resnet(ResNetConfig {
                    block: BlockKind::Bottleneck,
                    layers: vec![1, 1],
                    base_channels: 4,
                    stem: Stem::Imagenet,
                    ..ResNetConfig::resnet18(3, 6)
                }),
                vec![vec![2, 3, 32, 24]],
                vec![2, 6],
            ),
            (
                "unet",
                Architecture::Unet(UNetConfig::tiny(3, 4)),
                vec![vec![1, 3, 24, 32]],
                vec![1, 4, 24, 32],
            ),
            (
                "depth",
                Architecture::Depth(DepthNetConfig::tiny()),
                vec![vec![2, 3, 16, 24]],
                vec![2, 1, 16, 24],
            ),
            (
                "posenet",
                Architecture::Posenet(PoseNetConfig::tiny()),
                vec![vec![2, 3, 20, 20]],
                vec![2, 7],
            ),
            (
                "grasp",
                Architecture::GraspQuality(GraspNetConfig::tiny()),
                vec![vec![4, 1, 16, 16], vec![4, 1]],
                vec![4, 1],
            ),
        ]
    }

    #[test]
    fn every_network_keeps_its_shape_contract_and_round_trips_its_weights() {
        let dev = Device::Cpu;
        for (name, architecture, input_shapes, output_shape) in contracts() {
            let varmap = VarMap::new();
            let net = Network::new(
                &architecture,
                VarBuilder::from_varmap(&varmap, DType::F32, &dev),
            )
            .unwrap();
            crate::nn::initialize(&varmap, crate::nn::Init::He, 3).unwrap();
            let inputs: Vec<Tensor> = input_shapes
                .iter()
                .map(|s| Tensor::randn(0f32, 1., s.as_slice(), &dev).unwrap())
                .collect();
            let y = net.forward_t(&inputs, false).unwrap();
            assert_eq!(y.dims(), output_shape.as_slice(), "{name}");

            // Saved tensors load into a fresh network with nothing missing or unused and give
            // the same eval output.
            let path = std::env::temp_dir().join(format!(
                "perception-{name}-{}.safetensors",
                std::process::id()
            ));
            crate::models::save_weights(&varmap, &path).unwrap();
            let tensors = candle_core::safetensors::load(&path, &dev).unwrap();
            std::fs::remove_file(&path).unwrap();
            let fresh_map = VarMap::new();
            let fresh = Network::new(
                &architecture,
                VarBuilder::from_varmap(&fresh_map, DType::F32, &dev),
            )
            .unwrap();
            assign_weights_strict(&fresh_map, &tensors).unwrap();
            let again = fresh.forward_t(&inputs, false).unwrap();
            let diff = (&again - &y)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
            // Training mode (batch statistics) keeps the contract too.
            assert_eq!(
                net.forward_t(&inputs, true).unwrap().dims(),
                output_shape.as_slice()
            );
        }
    }

    #[test]
    fn wrong_input_count_is_an_error_not_a_panic() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = Network::new(&Architecture::GraspQuality(GraspNetConfig::tiny()), vb).unwrap();
        let patch = Tensor::zeros((1, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let err = net.forward_t(&[patch], false).unwrap_err().to_string();
        assert!(err.contains("takes 2 input"), "{err}");
    }
}
