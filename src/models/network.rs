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
