//! The generator as a whole: `Generator` makes frames from a config and a seed, and
//! `write_dataset` writes them as a data set folder (and optionally a rosbag2).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nalgebra::Point3;
use rand::{rngs::StdRng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use super::appearance::{develop, photo_files, Photo};
use super::bag::{BagError, BagFrame, BagGrasp, BagOptions, BagWriter};
use super::camera::PinholeCamera;
use super::config::{ImagingConfig, SceneConfig, ShapeFamily};
use super::geometry::MeshSolid;
use super::grasps::{grasp_candidates, sample_grasps, SceneGrasps};
use super::labels::FrameLabels;
use super::mesh_io::{mesh_files, read_mesh, MeshError};
use super::render::{render, RenderedFrame};
use super::sensor::{depth_to_millimetres, sense_depth, SensorInputs};
use super::texture::TexturedTarget;
use super::viewpoints::sample_camera;
use super::world::{ClassTable, Scene, SceneAssets};

#[derive(Debug, Error)]
pub enum SceneError {
    #[error("scene config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("output folder {0} exists and is not empty: give a new folder or remove it")]
    OutputNotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error("scene config {config}: {source}")]
    Mesh {
        config: PathBuf,
        #[source]
        source: MeshError,
    },
}

/// One rendered and labelled frame.
pub struct GeneratedFrame {
    pub labels: FrameLabels,
    pub render: RenderedFrame,
    /// What the depth sensor reports, 16UC1 millimetres (0 = no reading).
    pub depth_mm: Vec<u16>,
}

/// The generator's fixed inputs; frames depend only on these and their index.
pub struct Generator {
    pub config: SceneConfig,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    assets: SceneAssets,
}

impl Generator {
    /// Checks the config and loads the target images.
    pub fn new(
        config: SceneConfig,
        width: u32,
        height: u32,
        seed: u64,
        config_path: &Path,
    ) -> Result<Self, SceneError> {
        let invalid = |message: String| SceneError::Config {
            path: config_path.to_owned(),
            message,
        };
        config.check().map_err(invalid)?;
        if !(8..=8192).contains(&width) || !(8..=8192).contains(&height) {
            return Err(invalid(format!(
                "image size {width}x{height} outside 8..8192"
            )));
        }
        let targets = config
            .targets
            .iter()
            .map(|t| TexturedTarget::load(t).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let mesh_error = |source: MeshError| SceneError::Mesh {
            config: config_path.to_owned(),
            source,
        };
        let mut meshes = Vec::new();
        for source in &config.objects.meshes {
            for path in mesh_files(source).map_err(mesh_error)? {
                let loaded = read_mesh(&path, source.units).map_err(mesh_error)?;
                let solid = MeshSolid::new(
                    ShapeFamily::Mesh,
                    Some(loaded.name),
                    loaded.mesh,
                    loaded.topology.closed,
                )
                .ok_or_else(|| {
                    invalid(format!(
                        "{}: the mesh has no usable triangle",
                        path.display()
                    ))
                })?;
                meshes.push(Arc::new(solid));
            }
        }
        let mut photos = std::collections::BTreeMap::new();
        for surface in [
            &config.bin.surface,
            &config.floor.surface,
            &config.objects.surface,
        ]
        .into_iter()
        .flatten()
        {
            for entry in &surface.photos {
                if photos.contains_key(entry) {
                    continue;
                }
                let loaded = photo_files(entry)
                    .and_then(|files| {
                        files
                            .iter()
                            .map(|f| Photo::load(f).map(Arc::new))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(invalid)?;
                photos.insert(entry.clone(), loaded);
            }
        }
        Ok(Self {
            config,
            width,
            height,
            seed,
            assets: SceneAssets {
                targets,
                meshes,
                photos,
            },
        })
    }

    /// The seed of frame `index`: SplitMix64 of the data set seed and the index, so frames
    /// are independent of how many are generated and in which order.
    pub fn frame_seed(&self, index: usize) -> u64 {
        let mut z = self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Frame `index`, on its own (its scene built for it).
    pub fn frame(&self, index: usize) -> GeneratedFrame {
        let views = self.config.views_per_scene.max(1);
        if views == 1 {
            let seed = self.frame_seed(index);
            let mut rng = StdRng::seed_from_u64(seed);
            let scene = self.scene(&mut rng);
            let grasps = Deferred::Sample;
            return self.view(&scene, index, &mut rng, grasps);
        }
        self.frames_of_scene(index / views, index..index + 1)
            .pop()
            .expect("one frame asked, one made")
    }

    /// Frames `indices` (all of scene `scene_index` when `views_per_scene` > 1): the pile is
    /// built, settled and its grasps scored once, then seen by one camera per frame.
    pub fn frames_of_scene(
        &self,
        scene_index: usize,
        indices: std::ops::Range<usize>,
    ) -> Vec<GeneratedFrame> {
        if self.config.views_per_scene <= 1 {
            return indices.map(|i| self.frame(i)).collect();
        }
        // A seed of its own, so scene k's pile is not frame k's.
        let mut scene_rng =
            StdRng::seed_from_u64(self.frame_seed(scene_index) ^ 0x5CE9_E5EE_D000_0001);
        let scene = self.scene(&mut scene_rng);
        let grasps = sample_grasps(
            &scene,
            &self.config.gripper,
            &self.config.suction,
            &mut scene_rng,
        );
        indices
            .map(|index| {
                let mut rng = StdRng::seed_from_u64(self.frame_seed(index));
                self.view(&scene, index, &mut rng, Deferred::Sampled(&grasps))
            })
            .collect()
    }

    fn scene(&self, rng: &mut StdRng) -> Scene {
        match self.config.fixed_scene_seed {
            Some(fixed) => Scene::generate(
                &self.config,
                &self.assets,
                &mut StdRng::seed_from_u64(fixed),
            ),
            None => Scene::generate(&self.config, &self.assets, rng),
        }
    }

    /// One camera's frame of `scene`: camera, render, imaging, depth sensor, grasp labels.
    fn view(
        &self,
        scene: &Scene,
        index: usize,
        rng: &mut StdRng,
        grasps: Deferred<'_>,
    ) -> GeneratedFrame {
        let look_at = Point3::new(0.0, 0.0, scene.bin_floor_z_m);
        let camera: PinholeCamera =
            sample_camera(&self.config.camera, self.width, self.height, look_at, rng);
        let mut rendered = render(scene, &camera, self.config.boundary_px);
        // A neutral camera draws nothing, so configs without imaging keep their streams.
        if self.config.imaging != ImagingConfig::default() {
            let imaging = self.config.imaging.sample(rng);
            rendered.rgb = develop(
                &rendered.radiance,
                self.width as usize,
                self.height as usize,
                &imaging,
                rng,
            );
        }
        let sensed = sense_depth(
            &SensorInputs {
                depth_m: &rendered.depth_m,
                cos_incidence: &rendered.cos_incidence,
                albedo_luma: &rendered.albedo_luma,
                specular: &rendered.specular,
                instance: &rendered.instance_mask,
                width: self.width as usize,
                fx_px: camera.fx,
            },
            &self.config.sensor,
            rng,
        );
        let grasps = match grasps {
            Deferred::Sample => grasp_candidates(
                scene,
                &camera,
                &self.config.gripper,
                &self.config.suction,
                rng,
            ),
            Deferred::Sampled(grasps) => grasps.seen_by(scene, &camera),
        };
        GeneratedFrame {
            labels: FrameLabels::new(
                index,
                self.frame_seed(index),
                scene,
                &camera,
                &rendered,
                grasps,
            ),
            depth_mm: depth_to_millimetres(&sensed),
            render: rendered,
        }
    }

    pub fn classes(&self) -> ClassTable {
        ClassTable::new(self.config.objects.classes, &self.config.objects.families)
    }
}

/// Where a frame's grasp labels come from.
enum Deferred<'a> {
    /// Sampled for this frame, after its sensor noise (one view per scene).
    Sample,
    /// Sampled once for the scene.
    Sampled(&'a SceneGrasps),
}

/// What `write_dataset` did.
#[derive(Clone, Debug)]
pub struct GenerateReport {
    pub frames: usize,
    pub seconds: f64,
    pub threads: usize,
}

impl GenerateReport {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
}

/// `dataset.yaml`: what a reader needs to interpret the folder.
#[derive(Serialize)]
struct DatasetInfo<'a> {
    format: &'static str,
    count: usize,
    width: u32,
    height: u32,
    seed: u64,
    /// Relative paths; `{index}` is the frame number, six digits.
    files: Files,
    classes: Vec<ClassEntry>,
    depth_unit: &'static str,
    generator: &'a SceneConfig,
}

#[derive(Serialize)]
struct Files {
    rgb: &'static str,
    depth: &'static str,
    mask: &'static str,
    instances: &'static str,
    labels: &'static str,
}

#[derive(Serialize)]
struct ClassEntry {
    id: usize,
    name: String,
    color: [u8; 3],
}

const FOLDERS: [&str; 5] = ["rgb", "depth", "mask", "instances", "labels"];

/// Renders `count` frames in parallel into `out` (PNG RGB, 16-bit PNG depth in mm, PNG class
/// and instance masks, JSON labels, `dataset.yaml` last) and, with `bag`, also into an MCAP
/// rosbag2 in frame order. `progress` is called with the number of frames done.
pub fn write_dataset(
    generator: &Generator,
    count: usize,
    out: &Path,
    bag: Option<(&Path, BagOptions)>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GenerateReport, SceneError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SceneError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(SceneError::OutputNotEmpty(out.to_owned()));
    }
    for folder in FOLDERS.iter().chain(if generator.config.write_normals {
        &["normals"][..]
    } else {
        &[]
    }) {
        let dir = out.join(folder);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    let mut bag = match bag {
        Some((path, options)) => Some(BagWriter::create(path, options)?),
        None => None,
    };
    let started = Instant::now();
    let threads = rayon::current_num_threads();
    // Frames of one scene are made together (one pile, many cameras).
    let views = generator.config.views_per_scene.max(1);
    let render_and_write = |scene_index: usize| -> Result<Vec<GeneratedFrame>, SceneError> {
        let start = scene_index * views;
        let frames = generator.frames_of_scene(scene_index, start..(start + views).min(count));
        for frame in &frames {
            write_frame_files(out, frame, generator.config.write_normals)?;
        }
        Ok(frames)
    };
    let scenes = count.div_ceil(views);
    match &mut bag {
        None => {
            // Scenes are independent: one parallel loop, no barriers.
            let done = std::sync::atomic::AtomicUsize::new(0);
            (0..scenes).into_par_iter().try_for_each(|scene_index| {
                let made = render_and_write(scene_index)?.len();
                progress(done.fetch_add(made, std::sync::atomic::Ordering::Relaxed) + made);
                Ok::<_, SceneError>(())
            })?;
        }
        Some(bag) => {
            // Chunks keep the bag in frame order while every thread renders and writes files.
            let chunk = 16 * threads;
            for start in (0..scenes).step_by(chunk) {
                let frames: Vec<GeneratedFrame> = (start..(start + chunk).min(scenes))
                    .into_par_iter()
                    .map(render_and_write)
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                for frame in &frames {
                    bag.write_frame(&bag_frame(frame, &bag_grasps(frame)))?;
                }
                progress((start * views + frames.len()).min(count));
            }
        }
    }
    if let Some(bag) = bag {
        bag.finish()?;
    }
    let classes = generator.classes();
    let info = DatasetInfo {
        format: "perception-bin-picking/1",
        count,
        width: generator.width,
        height: generator.height,
        seed: generator.seed,
        files: Files {
            rgb: "rgb/{index}.png",
            depth: "depth/{index}.png",
            mask: "mask/{index}.png",
            instances: "instances/{index}.png",
            labels: "labels/{index}.json",
        },
        classes: classes
            .names
            .iter()
            .zip(&classes.colors)
            .enumerate()
            .map(|(id, (name, color))| ClassEntry {
                id,
                name: name.clone(),
                color: *color,
            })
            .collect(),
        depth_unit: "millimetres, 0 = no reading",
        generator: &generator.config,
    };
    let yaml = serde_yaml::to_string(&info).expect("dataset info serialises");
    let path = out.join("dataset.yaml");
    std::fs::write(&path, yaml).map_err(io(&path))?;
    Ok(GenerateReport {
        frames: count,
        seconds: started.elapsed().as_secs_f64(),
        threads,
    })
}

fn bag_grasps(frame: &GeneratedFrame) -> Vec<BagGrasp> {
    frame
        .labels
        .grasps
        .iter()
        .map(|g| BagGrasp {
            gripper_type: g.gripper.message_constant(),
            position_m: g.position_camera_m,
            orientation_xyzw: g.orientation_camera_xyzw,
            quality: g.quality as f32,
            width_m: g.width_m as f32,
            center_x_px: g.center_px[0] as f32,
            center_y_px: g.center_px[1] as f32,
            angle_rad: g.angle_rad as f32,
            approach_depth_m: g.approach_depth_m as f32,
            instance_id: g.instance_id,
        })
        .collect()
}

fn bag_frame<'a>(frame: &'a GeneratedFrame, grasps: &'a [BagGrasp]) -> BagFrame<'a> {
    let l = &frame.labels;
    BagFrame {
        width: frame.render.width,
        height: frame.render.height,
        rgb: &frame.render.rgb,
        depth_mm: &frame.depth_mm,
        class_mask: &frame.render.class_mask,
        instance_mask: &frame.render.instance_mask,
        intrinsics: [
            l.intrinsics.fx,
            l.intrinsics.fy,
            l.intrinsics.cx,
            l.intrinsics.cy,
        ],
        cell_from_camera_translation_m: l.cell_from_camera.translation_m,
        cell_from_camera_rotation_xyzw: l.cell_from_camera.rotation_xyzw,
        grasps,
    }
}

fn write_frame_files(out: &Path, frame: &GeneratedFrame, normals: bool) -> Result<(), SceneError> {
    let name = format!("{:06}", frame.labels.index);
    let r = &frame.render;
    let (w, h) = (r.width, r.height);
    write_png(
        &out.join("rgb").join(format!("{name}.png")),
        w,
        h,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &r.rgb,
    )?;
    write_png(
        &out.join("mask").join(format!("{name}.png")),
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &r.class_mask,
    )?;
    let big_endian = |v: &[u16]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    write_png(
        &out.join("depth").join(format!("{name}.png")),
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &big_endian(&frame.depth_mm),
    )?;
    write_png(
        &out.join("instances").join(format!("{name}.png")),
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &big_endian(&r.instance_mask),
    )?;
    if normals {
        let bytes: Vec<u8> = r
            .normals_camera
            .iter()
            .flat_map(|n| n.map(|c| ((c + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8))
            .collect();
        write_png(
            &out.join("normals").join(format!("{name}.png")),
            w,
            h,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            &bytes,
        )?;
    }
    let path = out.join("labels").join(format!("{name}.json"));
    let json = serde_json::to_vec_pretty(&frame.labels).expect("labels serialise");
    std::fs::write(&path, json).map_err(|source| SceneError::Io { path, source })
}

fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) -> Result<(), SceneError> {
    let encode = |message: String| SceneError::Encode {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::create(path).map_err(|source| SceneError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    // Synthetic images are flat-shaded: the fast setting compresses them well enough.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| encode(e.to_string()))?;
    writer
        .write_image_data(data)
        .map_err(|e| encode(e.to_string()))?;
    writer.finish().map_err(|e| encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::camera::look_at;
    use crate::scene::config::{DepthModel, ObjectsConfig};
    use crate::scene::families::ShapeFamily;
    use crate::scene::labels::PoseLabel;
    use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion, Vector3};

    fn generator(seed: u64) -> Generator {
        let mut config = SceneConfig::default();
        config.sensor.depth_model = DepthModel::Ideal;
        config.objects = ObjectsConfig {
            count: [8, 12],
            ..Default::default()
        };
        Generator::new(config, 160, 120, seed, Path::new("(test)")).unwrap()
    }

    fn iso(p: &PoseLabel) -> Isometry3<f64> {
        let [x, y, z, w] = p.rotation_xyzw;
        Isometry3::from_parts(
            Translation3::from(Vector3::from(p.translation_m)),
            UnitQuaternion::from_quaternion(Quaternion::new(w, x, y, z)),
        )
    }

    #[test]
    fn depth_of_the_bin_floor_seen_straight_down_is_the_height_difference() {
        let config = SceneConfig {
            objects: ObjectsConfig {
                count: [0, 0],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let scene = Scene::generate(&config, &SceneAssets::default(), &mut rng);
        let eye = Point3::new(0.0, 0.0, 0.8);
        let camera =
            PinholeCamera::from_fov(64, 48, 40.0, look_at(eye, Point3::new(0.0, 0.0, 0.0), 0.0));
        let frame = render(&scene, &camera, 2);
        let expected = 0.8 - config.bin.floor_thickness_m.bounds()[0];
        // A plane parallel to the image has the same z everywhere it is seen.
        for v in 16..32 {
            for u in 16..48 {
                let d = frame.depth_m[v * 64 + u] as f64;
                assert!(
                    (d - expected).abs() < 1e-6,
                    "pixel ({u}, {v}): {d} vs {expected}"
                );
                assert_eq!(frame.class_mask[v * 64 + u], crate::scene::world::CLASS_BIN);
            }
        }
    }

    #[test]
    fn masks_depth_and_object_poses_agree() {
        let g = generator(5);
        for index in 0..3 {
            let f = g.frame(index);
            let (w, l) = (f.render.width as usize, &f.labels);
            let mut checked = 0;
            for (i, &id) in f.render.instance_mask.iter().enumerate() {
                if id == 0 {
                    continue;
                }
                // Back-project the pixel with its depth; in the labelled object's frame the point
                // lies on that object's surface, and the class matches.
                let (u, v) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                let z = f.render.depth_m[i] as f64;
                let p_cam = Point3::new(
                    (u - l.intrinsics.cx) / l.intrinsics.fx * z,
                    (v - l.intrinsics.cy) / l.intrinsics.fy * z,
                    z,
                );
                let object = &l.objects[id as usize - 1];
                assert_eq!(object.instance_id, id);
                let p_obj = iso(&object.camera_from_object).inverse() * p_cam;
                let sd = object.shape.unwrap().signed_distance_local(&p_obj);
                assert!(
                    sd.abs() < 1e-4,
                    "frame {index} pixel {i}: {sd} m off object {id}"
                );
                let class = f.render.class_mask[i];
                assert!(class == object.class_id || class == g.classes().boundary());
                checked += 1;
            }
            assert!(checked > 200, "only {checked} object pixels");
            for object in &l.objects {
                if let Some([x0, y0, x1, y1]) = object.box_px {
                    assert!(x0 <= x1 && y0 <= y1 && (x1 as usize) < w);
                }
            }
        }
    }

    #[test]
    fn frames_are_deterministic_and_independent_of_order() {
        let g = generator(11);
        let a = g.frame(7);
        let _ = g.frame(3);
        let b = g.frame(7);
        assert_eq!(a.render.rgb, b.render.rgb);
        assert_eq!(a.depth_mm, b.depth_mm);
        assert_eq!(a.labels, b.labels);
        assert_ne!(g.frame(8).render.rgb, a.render.rgb);
        let realistic =
            Generator::new(SceneConfig::default(), 160, 120, 11, Path::new("(test)")).unwrap();
        assert_eq!(realistic.frame(2).depth_mm, realistic.frame(2).depth_mm);
    }

    #[test]
    fn a_fixed_scene_keeps_the_objects_in_the_cell_and_moves_the_camera() {
        let mut g = generator(3);
        g.config.fixed_scene_seed = Some(42);
        let (a, b) = (g.frame(0).labels, g.frame(1).labels);
        assert_eq!(a.objects.len(), b.objects.len());
        for (oa, ob) in a.objects.iter().zip(&b.objects) {
            assert_eq!(oa.cell_from_object, ob.cell_from_object);
        }
        assert_ne!(a.cell_from_camera, b.cell_from_camera);
        g.config.fixed_scene_seed = None;
        let c = g.frame(1).labels;
        assert_ne!(
            c.objects.first().map(|o| &o.cell_from_object),
            b.objects.first().map(|o| &o.cell_from_object)
        );
    }

    #[test]
    fn grasp_labels_are_sane() {
        let g = generator(21);
        let (mut successes, mut total) = (0, 0);
        for index in 0..4 {
            let f = g.frame(index);
            for grasp in &f.labels.grasps {
                total += 1;
                assert!((0.0..=1.0).contains(&grasp.quality));
                assert_eq!(grasp.success, grasp.quality >= 0.5);
                let object = &f.labels.objects[grasp.instance_id as usize - 1];
                let cell_from_object = iso(&object.cell_from_object);
                // Every contact lies on its object's surface.
                for c in &grasp.contacts_cell_m {
                    let local = cell_from_object.inverse() * Point3::from(Vector3::from(*c));
                    let sd = object.shape.unwrap().signed_distance_local(&local);
                    assert!(sd.abs() < 1e-6, "contact {sd} m off the surface");
                }
                let [x, y] = grasp.center_px;
                assert!(x >= 0.0 && y >= 0.0 && x < 160.0 && y < 120.0);
                if grasp.success {
                    successes += 1;
                    match grasp.gripper {
                        crate::scene::grasps::GripperKind::ParallelJaw => {
                            assert!(grasp.width_m >= g.config.gripper.min_width_m);
                            assert!(
                                grasp.width_m + 2.0 * g.config.gripper.clearance_m
                                    <= g.config.gripper.max_width_m
                            );
                            assert_eq!(grasp.contacts_cell_m.len(), 2);
                        }
                        crate::scene::grasps::GripperKind::Suction => {
                            assert_eq!(grasp.contacts_cell_m.len(), 1)
                        }
                    }
                }
                // The camera-frame pose is the cell-frame centre seen from the camera.
                let cam = iso(&f.labels.cell_from_camera);
                let p = cam.inverse() * Point3::from(Vector3::from(grasp.center_cell_m));
                assert!((p.coords - Vector3::from(grasp.position_camera_m)).norm() < 1e-9);
                assert!((p.z - grasp.approach_depth_m).abs() < 1e-9);
            }
        }
        // Both outcomes occur, so a classifier has something to learn.
        assert!(successes > 0 && successes < total, "{successes} of {total}");
    }

    fn committed_config(name: &str) -> SceneConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/scene")
            .join(name);
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn varied(seed: u64) -> Generator {
        let mut config = committed_config("bin_picking_varied.yaml");
        config.sensor.depth_model = DepthModel::Ideal;
        Generator::new(config, 160, 120, seed, Path::new("(test)")).unwrap()
    }

    #[test]
    fn the_committed_scene_configs_parse_and_check() {
        for entry in
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scene")).unwrap()
        {
            let path = entry.unwrap().path();
            let config: SceneConfig =
                serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            config
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        // Unknown keys are refused at every level, with the key's name.
        for text in [
            "objects: {families: [box], colour: red}",
            "bin: {wall_heigth_m: 0.2}",
            "lighting: {shadow: true}",
            "imaging: {exposur: [1, 2]}",
            "objects: {meshes: [{path: parts/, units: mm, scale: 2}]}",
            "objects: {meshes: [{path: parts/, units: inch}]}",
            "objects: {families: [torus]}",
        ] {
            let err = serde_yaml::from_str::<SceneConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("unknown") || err.contains("variant"),
                "{text}: {err}"
            );
        }
        // The first generator's key `kinds` still reads as families.
        let old: SceneConfig = serde_yaml::from_str("objects: {kinds: [box, prism]}").unwrap();
        assert_eq!(
            old.objects.families,
            vec![ShapeFamily::Box, ShapeFamily::Prism]
        );
        // Families that cannot stand upright need physics.
        let lowered: SceneConfig =
            serde_yaml::from_str("objects: {families: [blob], placement: lowered}").unwrap();
        assert!(lowered.check().unwrap_err().contains("placement: physics"));
    }

    #[test]
    fn varied_object_pixels_lie_on_their_solids_and_every_family_appears() {
        let g = varied(3);
        let families: std::collections::BTreeSet<ShapeFamily> =
            g.config.objects.families.iter().copied().collect();
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..12 {
            let seed = g.frame_seed(index);
            let scene = Scene::generate(&g.config, &g.assets, &mut StdRng::seed_from_u64(seed));
            seen.extend(scene.objects.iter().map(|o| o.family));
            if index >= 3 {
                continue;
            }
            let camera = sample_camera(
                &g.config.camera,
                160,
                120,
                Point3::new(0.0, 0.0, scene.bin_floor_z_m),
                &mut StdRng::seed_from_u64(seed),
            );
            let frame = render(&scene, &camera, 1);
            let mut checked = 0;
            for (i, &id) in frame.instance_mask.iter().enumerate() {
                if id == 0 {
                    continue;
                }
                let (u, v) = ((i % 160) as f64 + 0.5, (i / 160) as f64 + 0.5);
                let z = frame.depth_m[i] as f64;
                let p_cam = Point3::new(
                    (u - camera.cx) / camera.fx * z,
                    (v - camera.cy) / camera.fy * z,
                    z,
                );
                let p_cell = camera.cell_from_camera * p_cam;
                let object = &scene.objects[id as usize - 1];
                let d = object
                    .placed
                    .solid
                    .signed_distance_local(&object.placed.to_local(&p_cell));
                // Depth is stored as f32: 0.1 mm holds at these distances.
                assert!(
                    d.abs() < 1e-4,
                    "frame {index} pixel {i}: {d} m off object {id}"
                );
                checked += 1;
            }
            assert!(checked > 100, "frame {index}: only {checked} object pixels");
        }
        assert_eq!(seen, families, "families drawn in 12 scenes");
    }

    #[test]
    fn varied_piles_do_not_interpenetrate_and_grasp_contacts_lie_on_surfaces() {
        use parry3d_f64::shape::ConvexPolyhedron;
        let g = varied(5);
        let mut grasps = 0;
        for index in 0..4 {
            let f = g.frame(index);
            let scene = Scene::generate(
                &g.config,
                &g.assets,
                &mut StdRng::seed_from_u64(g.frame_seed(index)),
            );
            let hulls: Vec<_> = scene
                .objects
                .iter()
                .map(|o| {
                    (
                        o.placed.world_from_local,
                        ConvexPolyhedron::from_convex_hull(&o.placed.solid.hull_points()).unwrap(),
                    )
                })
                .collect();
            for a in 0..hulls.len() {
                for b in a + 1..hulls.len() {
                    if let Some(c) = parry3d_f64::query::contact(
                        &hulls[a].0,
                        &hulls[a].1,
                        &hulls[b].0,
                        &hulls[b].1,
                        0.0,
                    )
                    .unwrap()
                    {
                        assert!(
                            c.dist > -1e-3,
                            "frame {index}: objects {a} and {b} overlap {} m",
                            -c.dist
                        );
                    }
                }
            }
            for grasp in &f.labels.grasps {
                let object = &scene.objects[grasp.instance_id as usize - 1];
                for c in &grasp.contacts_cell_m {
                    let local = object.placed.to_local(&Point3::from(Vector3::from(*c)));
                    let d = object.placed.solid.signed_distance_local(&local);
                    assert!(d.abs() < 1e-6, "contact {d} m off the surface");
                }
                grasps += 1;
            }
        }
        assert!(grasps > 50, "{grasps} grasps");
    }

    #[test]
    fn varied_frames_are_deterministic() {
        let g = varied(9);
        let (a, b) = (g.frame(4), g.frame(4));
        assert_eq!(a.render.rgb, b.render.rgb);
        assert_eq!(a.depth_mm, b.depth_mm);
        assert_eq!(a.labels, b.labels);
    }

    /// The parts workflow of the README: a folder of the user's meshes, one config naming it,
    /// a data set whose objects are those parts.
    #[test]
    fn a_folder_of_user_meshes_becomes_a_data_set_of_those_parts() {
        let dir = std::env::temp_dir().join(format!("perception-parts-{}", std::process::id()));
        let parts = dir.join("parts");
        std::fs::create_dir_all(&parts).unwrap();
        // An L-shaped bracket, 60 x 40 x 15 mm, as OBJ with quads.
        let l_outline = [
            (0.0, 0.0),
            (60.0, 0.0),
            (60.0, 15.0),
            (15.0, 15.0),
            (15.0, 40.0),
            (0.0, 40.0),
        ];
        let mut obj = String::new();
        for z in [0.0, 15.0] {
            for (x, y) in l_outline {
                obj += &format!("v {x} {y} {z}\n");
            }
        }
        // Caps as two quads each (the L splits into two rectangles), sides as quads.
        obj += "f 1 4 3 2\nf 1 6 5 4\nf 7 8 9 10\nf 7 10 11 12\n";
        for i in 0..6 {
            let (a, b) = (i + 1, (i + 1) % 6 + 1);
            obj += &format!("f {a} {b} {} {}\n", b + 6, a + 6);
        }
        std::fs::write(parts.join("bracket.obj"), obj).unwrap();
        // A hexagonal nut blank, 30 mm across, 12 mm high, as ASCII STL.
        let ring: Vec<[f64; 2]> = (0..6)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / 6.0;
                [15.0 * a.cos(), 15.0 * a.sin()]
            })
            .collect();
        let mut facets: Vec<[[f64; 3]; 3]> = Vec::new();
        for i in 0..6 {
            let (p, q) = (ring[i], ring[(i + 1) % 6]);
            facets.push([[0.0, 0.0, 12.0], [p[0], p[1], 12.0], [q[0], q[1], 12.0]]);
            facets.push([[0.0, 0.0, 0.0], [q[0], q[1], 0.0], [p[0], p[1], 0.0]]);
            facets.push([[p[0], p[1], 0.0], [q[0], q[1], 0.0], [q[0], q[1], 12.0]]);
            facets.push([[p[0], p[1], 0.0], [q[0], q[1], 12.0], [p[0], p[1], 12.0]]);
        }
        let mut stl = String::from("solid nut\n");
        for f in &facets {
            stl += "facet normal 0 0 0\nouter loop\n";
            for v in f {
                stl += &format!("vertex {} {} {}\n", v[0], v[1], v[2]);
            }
            stl += "endloop\nendfacet\n";
        }
        stl += "endsolid nut\n";
        std::fs::write(parts.join("nut.stl"), stl).unwrap();
        let yaml = format!(
            "objects:\n  families: [mesh]\n  meshes:\n    - {{path: {}, units: mm}}\n  count: [4, 8]\n  placement: physics\n  classes: single\n",
            parts.display()
        );
        let config: SceneConfig = serde_yaml::from_str(&yaml).unwrap();
        let generator = Generator::new(config, 96, 72, 1, Path::new("parts.yaml")).unwrap();
        let out = dir.join("data");
        write_dataset(&generator, 3, &out, None, &|_| {}).unwrap();
        let mut sources = std::collections::BTreeSet::new();
        for index in 0..3 {
            let text =
                std::fs::read_to_string(out.join(format!("labels/{index:06}.json"))).unwrap();
            let labels: FrameLabels = serde_json::from_str(&text).unwrap();
            assert!(!labels.objects.is_empty());
            for o in &labels.objects {
                assert_eq!(o.family, "mesh");
                assert!(o.shape.is_none());
                assert_eq!(o.mesh_closed, Some(true));
                sources.insert(o.source.clone().unwrap());
            }
        }
        assert_eq!(
            sources.into_iter().collect::<Vec<_>>(),
            vec!["bracket.obj".to_string(), "nut.stl".to_string()]
        );
        // A broken file in the folder stops the generator before any frame, naming the file.
        std::fs::write(parts.join("empty.ply"), "").unwrap();
        let config: SceneConfig = serde_yaml::from_str(&yaml).unwrap();
        let err = Generator::new(config, 96, 72, 1, Path::new("parts.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("empty.ply") && err.contains("parts.yaml"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn views_of_one_pile_share_it_and_match_frames_made_alone() {
        let mut g = varied(13);
        g.config.views_per_scene = 3;
        let together = g.frames_of_scene(1, 3..6);
        for (k, frame) in together.iter().enumerate() {
            let alone = g.frame(3 + k);
            assert_eq!(alone.labels, frame.labels);
            assert_eq!(alone.render.rgb, frame.render.rgb);
        }
        let (a, b) = (&together[0].labels, &together[1].labels);
        assert_eq!(
            a.objects
                .iter()
                .map(|o| o.cell_from_object)
                .collect::<Vec<_>>(),
            b.objects
                .iter()
                .map(|o| o.cell_from_object)
                .collect::<Vec<_>>()
        );
        assert_ne!(a.cell_from_camera, b.cell_from_camera);
        // The next pile is another one.
        assert_ne!(
            g.frame(6)
                .labels
                .objects
                .first()
                .map(|o| o.cell_from_object),
            a.objects.first().map(|o| o.cell_from_object)
        );
    }
}
