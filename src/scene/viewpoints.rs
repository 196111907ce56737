//! Where the camera of each frame is: overhead above the bin, or on a hemisphere around it.

use nalgebra::Point3;
use rand::Rng;

use super::camera::{look_at, PinholeCamera};
use super::config::{CameraConfig, Viewpoint};

/// A camera for one frame: overhead above the bin with small jitter (bin picking), or on a
/// hemisphere around the cell looking at the bin (pose regression). `look_at_cell` is the
/// bin's centre.
pub fn sample_camera(
    config: &CameraConfig,
    width: u32,
    height: u32,
    look_at_cell: Point3<f64>,
    rng: &mut impl Rng,
) -> PinholeCamera {
    let roll = rng
        .gen_range(-config.roll_jitter_deg..=config.roll_jitter_deg)
        .to_radians();
    let pose = match config.viewpoint {
        Viewpoint::Overhead => {
            let j = config.overhead_jitter_m;
            let eye = Point3::new(
                look_at_cell.x + rng.gen_range(-j..=j),
                look_at_cell.y + rng.gen_range(-j..=j),
                rng.gen_range(config.overhead_height_m[0]..=config.overhead_height_m[1]),
            );
            let tilt = rng.gen_range(0.0..=config.overhead_tilt_deg).to_radians();
            let direction = rng.gen_range(0.0..std::f64::consts::TAU);
            let reach = (eye.z - look_at_cell.z) * tilt.tan();
            let target = Point3::new(
                eye.x + reach * direction.cos(),
                eye.y + reach * direction.sin(),
                look_at_cell.z,
            );
            look_at(eye, target, roll)
        }
        Viewpoint::Hemisphere => {
            let [e0, e1] = config.hemisphere_elevation_deg;
            let elevation = rng.gen_range(e0..=e1).to_radians();
            let azimuth = rng.gen_range(0.0..std::f64::consts::TAU);
            let radius =
                rng.gen_range(config.hemisphere_radius_m[0]..=config.hemisphere_radius_m[1]);
            let j = config.look_at_jitter_m;
            let target = look_at_cell
                + nalgebra::Vector3::new(
                    rng.gen_range(-j..=j),
                    rng.gen_range(-j..=j),
                    rng.gen_range(-j..=j),
                );
            let eye = look_at_cell
                + nalgebra::Vector3::new(
                    radius * elevation.cos() * azimuth.cos(),
                    radius * elevation.cos() * azimuth.sin(),
                    radius * elevation.sin(),
                );
            look_at(eye, target, roll)
        }
    };
    let fov_deg = config.horizontal_fov_deg.sample(rng);
    let mut camera = PinholeCamera::from_fov(width, height, fov_deg, pose);
    let j = config.principal_point_jitter_px;
    if j > 0.0 {
        camera.cx += rng.gen_range(-j..=j);
        camera.cy += rng.gen_range(-j..=j);
    }
    camera
}
