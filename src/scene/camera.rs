//! The pinhole camera of the generator: intrinsics from a field of view, pixel rays, projection.

use nalgebra::{Isometry3, Matrix3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};

use super::geometry::Ray;

/// A pinhole camera without distortion, posed in the cell. The camera frame is the optical
/// frame of REP 103: x right, y down, z forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PinholeCamera {
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub cell_from_camera: Isometry3<f64>,
}

impl PinholeCamera {
    /// Square pixels, principal point at the image centre, the given horizontal field of view.
    pub fn from_fov(
        width: u32,
        height: u32,
        horizontal_fov_deg: f64,
        cell_from_camera: Isometry3<f64>,
    ) -> Self {
        let f = width as f64 / (2.0 * (horizontal_fov_deg.to_radians() / 2.0).tan());
        Self {
            width,
            height,
            fx: f,
            fy: f,
            cx: width as f64 / 2.0,
            cy: height as f64 / 2.0,
            cell_from_camera,
        }
    }

    /// Ray through the centre of pixel (u, v), in the cell frame, and the factor that turns
    /// distance along it into depth (camera z).
    pub fn pixel_ray(&self, u: u32, v: u32) -> (Ray, f64) {
        let d = Vector3::new(
            (u as f64 + 0.5 - self.cx) / self.fx,
            (v as f64 + 0.5 - self.cy) / self.fy,
            1.0,
        );
        let norm = d.norm();
        let origin = Point3::from(self.cell_from_camera.translation.vector);
        let direction = self.cell_from_camera.rotation * (d / norm);
        (Ray { origin, direction }, 1.0 / norm)
    }

    /// Pixel coordinates (x right, y down, continuous: pixel centres at +0.5) and depth of a
    /// cell point; `None` behind the camera.
    pub fn project(&self, point_in_cell: &Point3<f64>) -> Option<(f64, f64, f64)> {
        let p = self.cell_from_camera.inverse_transform_point(point_in_cell);
        (p.z > 1e-6).then(|| {
            (
                self.fx * p.x / p.z + self.cx,
                self.fy * p.y / p.z + self.cy,
                p.z,
            )
        })
    }

    pub fn camera_from_cell(&self) -> Isometry3<f64> {
        self.cell_from_camera.inverse()
    }
}

/// Pose of an optical frame at `eye` looking at `target`, image "up" as close to cell +z
/// as the view allows, then rolled about the optical axis by `roll_rad`.
pub fn look_at(eye: Point3<f64>, target: Point3<f64>, roll_rad: f64) -> Isometry3<f64> {
    let z = (target - eye).normalize();
    // Looking (almost) straight down, cell +y serves as "up" instead.
    let up = if z.z.abs() > 0.999 {
        Vector3::y()
    } else {
        Vector3::z()
    };
    let x = z.cross(&up).normalize();
    let y = z.cross(&x);
    let rotation = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[x, y, z]));
    let roll = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), roll_rad);
    Isometry3::from_parts(
        Translation3::from(eye.coords),
        UnitQuaternion::from_rotation_matrix(&rotation) * roll,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_at_gives_the_optical_frame_and_projection_inverts_rays() {
        // Looking along cell +x with +z up: image right is cell -y, image down is cell -z.
        let pose = look_at(Point3::new(0.0, 0.0, 1.0), Point3::new(2.0, 0.0, 1.0), 0.0);
        assert!((pose.rotation * Vector3::x() - (-Vector3::y())).norm() < 1e-12);
        assert!((pose.rotation * Vector3::y() - (-Vector3::z())).norm() < 1e-12);
        let cam = PinholeCamera::from_fov(640, 480, 90.0, pose);
        assert!((cam.fx - 320.0).abs() < 1e-9);
        let (ray, depth_per_t) = cam.pixel_ray(100, 400);
        let p = ray.at(2.0);
        let (x, y, z) = cam.project(&p).unwrap();
        assert!((x - 100.5).abs() < 1e-9 && (y - 400.5).abs() < 1e-9);
        assert!((z - 2.0 * depth_per_t).abs() < 1e-12);
    }
}
