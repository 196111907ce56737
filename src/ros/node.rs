//! `perception_node`: subscriptions -> stamp pairing -> frame queue -> one inference worker
//! thread -> publishers. The executor (a blocking spin thread plus tokio tasks) never waits
//! for inference.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::geometry_msgs::msg::{PoseArray, PoseWithCovarianceStamped};
use r2r::perception_msgs::msg::{Detection2DArray, GraspArray};
use r2r::sensor_msgs::msg::{CameraInfo, Image};
use r2r::std_msgs::msg::Header;
use r2r::visualization_msgs::msg::MarkerArray;
use r2r::QosProfile;

use super::convert::{intrinsics, stamp_ns};
use super::diagnostics::{diagnostics_message, DiagnosticsContext};
use super::outputs::{decode_frame, load_pipeline, OutputMessages};
use super::params::{NodeConfig, NodeParams, RuntimeParams};
use super::NodeError;
use crate::image::CameraIntrinsics;
use crate::models::WeightsSource;
use crate::pipeline::{InferOptions, Pipeline, PipelineError};
use crate::preprocess::InputError;
use crate::runtime::{
    DropReason, FrameQueue, LogThrottle, NodeStats, Push, QueueMode, StampPairer,
};

const NODE_NAME: &str = "perception_node";
/// Images that may wait for their depth before being processed without it.
const MAX_PENDING_IMAGES: usize = 4;

/// A colour message with its paired depth, as it waits for the worker.
struct PendingFrame {
    image: Image,
    depth: Option<Image>,
    camera: Option<CameraIntrinsics>,
    received_at: Instant,
}

/// State shared by the executor tasks and the worker; every lock is held for a few statements.
struct Shared {
    logger: String,
    params: Arc<Mutex<RuntimeParams>>,
    stats: Mutex<NodeStats>,
    queue: FrameQueue<PendingFrame>,
    pairer: Mutex<StampPairer<(Image, Instant), Image>>,
    camera: Mutex<Option<CameraIntrinsics>>,
    throttle: Mutex<LogThrottle>,
    running: AtomicBool,
}

impl Shared {
    fn warn_throttled(&self, key: &str, message: impl FnOnce() -> String) {
        let allowed = self
            .throttle
            .lock()
            .expect("throttle lock")
            .allow(key, Instant::now());
        if let Some(held_back) = allowed {
            let suffix = if held_back > 0 {
                format!(" ({held_back} similar not logged)")
            } else {
                String::new()
            };
            r2r::log_warn!(&self.logger, "{}{}", message(), suffix);
        }
    }

    fn drop_frame(&self, reason: DropReason) {
        self.stats.lock().expect("stats lock").dropped(reason);
    }

    /// Queues frames completed by the pairer; counts and reports what the queue refuses.
    fn enqueue(&self, frames: Vec<crate::runtime::Paired<(Image, Instant), Image>>) {
        for paired in frames {
            let (image, received_at) = paired.image;
            let camera = *self.camera.lock().expect("camera lock");
            let frame = PendingFrame {
                image,
                depth: paired.depth,
                camera,
                received_at,
            };
            match self.queue.push(frame) {
                Push::Queued | Push::Closed => {}
                Push::ReplacedOlder => self.drop_frame(DropReason::Superseded),
                Push::RefusedFull => {
                    self.drop_frame(DropReason::QueueFull);
                    self.warn_throttled("queue_full", || {
                        "every_frame queue full, frame dropped: raise queue_size or slow the input"
                            .into()
                    });
                }
            }
        }
    }
}

/// Starts the node with the process's `--ros-args` and runs it until SIGINT/SIGTERM.
pub fn run() -> Result<(), NodeError> {
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "")?;
    let logger = node.logger().to_owned();

    // Parameters: declared from NodeParams, overridden by --params-file / -p, then validated.
    let params = Arc::new(Mutex::new(RuntimeParams(NodeParams::default())));
    let given: Vec<String> = node
        .params
        .lock()
        .expect("params lock")
        .keys()
        .cloned()
        .collect();
    let unknown = NodeParams::unknown_names(&given);
    let (param_handler, _param_events) = node.make_derived_parameter_handler(params.clone())?;
    if let Some(name) = unknown.first() {
        return Err(super::ParamError {
            name: name.clone(),
            value: "(given)".into(),
            problem: format!("this node has no such parameter (known: {})", known_names()),
            fix: "correct its name or remove it from the parameters file".into(),
        }
        .into());
    }
    let config = params.lock().expect("params lock").0.validate()?;

    // Model and device, validated before any topic exists.
    let (pipeline, selected) = load_pipeline(&config)?;
    if let Some(reason) = &selected.fallback_reason {
        r2r::log_warn!(&logger, "{reason}; running on the CPU");
    }
    for head in pipeline.head_names() {
        r2r::log_info!(&logger, "head {head}");
    }
    let untrained = matches!(
        pipeline.segmentation_weights(),
        WeightsSource::UntrainedSeed(_)
    );
    match pipeline.segmentation_weights() {
        WeightsSource::File(path) => r2r::log_info!(&logger, "segmentation model {} from {}", pipeline.segmentation_name(), path.display()),
        WeightsSource::UntrainedSeed(seed) => r2r::log_warn!(
            &logger,
            "segmentation model {} is UNTRAINED (initialised from seed {seed}, no model.safetensors): its masks carry no meaning",
            pipeline.segmentation_name()
        ),
    }
    r2r::log_info!(
        &logger,
        "device: {}; mode: {:?}",
        selected.label,
        config.mode
    );

    let input_qos = match (config.reliable_qos, config.mode) {
        // Reliable delivery into a reader history shorter than a burst still loses frames,
        // silently, before the node sees them: every_frame keeps as many as its queue.
        (true, QueueMode::EveryFrame { capacity }) => {
            QosProfile::default().keep_last(capacity.max(10))
        }
        (true, QueueMode::Live) => QosProfile::default(),
        (false, _) => QosProfile::sensor_data(),
    };
    let image_stream = node.subscribe::<Image>("image", input_qos.clone())?;
    let depth_stream = node.subscribe::<Image>("depth", input_qos.clone())?;
    let info_stream = node.subscribe::<CameraInfo>("camera_info", input_qos)?;
    let mask_pub = node.create_publisher::<Image>("segmentation/mask", QosProfile::default())?;
    let overlay_pub =
        node.create_publisher::<Image>("segmentation/overlay", QosProfile::default())?;
    let heads = HeadPublishers {
        mask: mask_pub,
        overlay: overlay_pub,
        instances: node
            .create_publisher::<Image>("segmentation/instances", QosProfile::default())?,
        detections: node
            .create_publisher::<Detection2DArray>("detections", QosProfile::default())?,
        class_names: pipeline.class_names(),
        depth: match config.depth_model_dir {
            Some(_) => {
                Some(node.create_publisher::<Image>("depth/estimated", QosProfile::default())?)
            }
            None => None,
        },
        grasps: match config.grasp_head() {
            true => Some(GraspPublishers {
                grasps: node.create_publisher::<GraspArray>("grasps", QosProfile::default())?,
                poses: node.create_publisher::<PoseArray>("grasps/poses", QosProfile::default())?,
                markers: node
                    .create_publisher::<MarkerArray>("grasps/markers", QosProfile::default())?,
            }),
            false => None,
        },
        pose: match config.pose_model_dir {
            Some(_) => Some(node.create_publisher::<PoseWithCovarianceStamped>(
                "camera_pose",
                QosProfile::default(),
            )?),
            None => None,
        },
    };
    let diagnostics_pub =
        node.create_publisher::<DiagnosticArray>("/diagnostics", QosProfile::default())?;
    let clock = node.get_ros_clock();

    let shared = Arc::new(Shared {
        logger: logger.clone(),
        params,
        stats: Mutex::new(NodeStats::new()),
        queue: FrameQueue::new(config.mode),
        pairer: Mutex::new(
            StampPairer::new(
                config.sync_slop.as_nanos() as i64,
                config.depth_timeout.as_nanos() as i64,
                MAX_PENDING_IMAGES,
            )
            .wait_for_first_depth(),
        ),
        camera: Mutex::new(None),
        throttle: Mutex::new(LogThrottle::new(config.log_throttle)),
        running: AtomicBool::new(true),
    });

    let worker = {
        let shared = shared.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || worker_loop(&shared, &config, &pipeline, &heads))?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let diagnostics_context = DiagnosticsContext {
        node_name: node.fully_qualified_name()?,
        device_label: selected.label.clone(),
        mode: match config.mode {
            QueueMode::Live => "live".into(),
            QueueMode::EveryFrame { capacity } => format!("every_frame (queue {capacity})"),
        },
        model: config.segmentation_model_dir.display().to_string(),
    };
    let node = Arc::new(Mutex::new(node));
    runtime.block_on(async {
        tokio::spawn(param_handler);
        tokio::spawn(flush_unpaired(shared.clone(), config.sync_slop));
        tokio::spawn(publish_diagnostics(
            shared.clone(),
            diagnostics_pub,
            clock,
            diagnostics_context,
            config.diagnostics_period,
            untrained,
        ));
        let spinner = {
            let node = node.clone();
            let shared = shared.clone();
            let (mut images, mut depths, mut infos) = (image_stream, depth_stream, info_stream);
            // One thread takes the inputs from DDS and hands them on. r2r passes each message
            // through a channel of 10 that drops what does not fit, and takes at most one
            // message per subscription per spin: draining right after each spin means that
            // channel never holds more than one, whatever the load on the other threads.
            tokio::task::spawn_blocking(move || {
                while shared.running.load(Ordering::Relaxed) {
                    node.lock()
                        .expect("node lock")
                        .spin_once(Duration::from_millis(10));
                    // Depth and camera_info before the images of the same spin, so an image
                    // finds what was sent with it.
                    drain(&mut depths, |depth| on_depth(&shared, depth));
                    drain(&mut infos, |info| on_camera_info(&shared, info));
                    drain(&mut images, |image| on_image(&shared, image));
                }
            })
        };
        wait_for_shutdown_signal().await;
        r2r::log_info!(&logger, "shutting down: finishing queued frames");
        shared.running.store(false, Ordering::Relaxed);
        shared.queue.close();
        let _ = spinner.await;
    });
    worker
        .join()
        .map_err(|_| std::io::Error::other("inference worker panicked"))?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

fn known_names() -> String {
    use r2r::RosParams;
    let mut params = r2r::indexmap::IndexMap::new();
    let mut defaults = NodeParams::default();
    // Registering into an empty map lists every declared name.
    if defaults.register_parameters("", None, &mut params).is_err() {
        return String::new();
    }
    params.keys().cloned().collect::<Vec<_>>().join(", ")
}

async fn wait_for_shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
    }
}

/// Hands every message waiting in `stream` to `handle`, without waiting for more.
fn drain<T>(stream: &mut (impl futures::Stream<Item = T> + Unpin), mut handle: impl FnMut(T)) {
    while let Some(Some(item)) = stream.next().now_or_never() {
        handle(item);
    }
}

fn on_image(shared: &Shared, image: Image) {
    let received_at = Instant::now();
    shared
        .stats
        .lock()
        .expect("stats lock")
        .image_received(received_at);
    let stamp = stamp_ns(&image.header.stamp);
    let ready = shared
        .pairer
        .lock()
        .expect("pairer lock")
        .push_image(stamp, (image, received_at));
    shared.enqueue(ready);
}

fn on_depth(shared: &Shared, depth: Image) {
    shared.stats.lock().expect("stats lock").depth_received();
    let stamp = stamp_ns(&depth.header.stamp);
    let ready = shared
        .pairer
        .lock()
        .expect("pairer lock")
        .push_depth(stamp, depth);
    shared.enqueue(ready);
}

fn on_camera_info(shared: &Shared, info: CameraInfo) {
    let parsed = intrinsics(&info);
    if parsed.is_none() {
        shared.warn_throttled("camera_info", || {
            "camera_info has no usable K (uncalibrated camera?): 3-D outputs need a calibrated camera".into()
        });
    }
    *shared.camera.lock().expect("camera lock") = parsed;
}

/// Releases images whose depth never came once the inputs have been quiet for longer than
/// the slop (end of a stream, a stopped depth camera), so no frame is left waiting forever.
async fn flush_unpaired(shared: Arc<Shared>, slop: Duration) {
    let quiet = slop + Duration::from_millis(100);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_pending_change = Instant::now();
    let mut last_pending = 0;
    while shared.running.load(Ordering::Relaxed) {
        tick.tick().await;
        let pending = shared.pairer.lock().expect("pairer lock").pending();
        if pending != last_pending {
            last_pending = pending;
            last_pending_change = Instant::now();
        } else if pending > 0 && last_pending_change.elapsed() > quiet {
            let ready = shared.pairer.lock().expect("pairer lock").flush();
            shared.enqueue(ready);
            last_pending = 0;
        }
    }
}

async fn publish_diagnostics(
    shared: Arc<Shared>,
    publisher: r2r::Publisher<DiagnosticArray>,
    clock: Arc<Mutex<r2r::Clock>>,
    context: DiagnosticsContext,
    period: Duration,
    untrained: bool,
) {
    let mut tick = tokio::time::interval(period);
    let mut previous = None;
    while shared.running.load(Ordering::Relaxed) {
        tick.tick().await;
        let snapshot = shared
            .stats
            .lock()
            .expect("stats lock")
            .snapshot(Instant::now());
        let stamp = clock
            .lock()
            .expect("clock lock")
            .get_now()
            .map(|t| r2r::Clock::to_builtin_time(&t))
            .unwrap_or_default();
        let header = Header {
            stamp,
            frame_id: String::new(),
        };
        let msg = diagnostics_message(header, &context, &snapshot, previous.as_ref(), untrained);
        if let Err(e) = publisher.publish(&msg) {
            shared.warn_throttled("diagnostics", || {
                format!("cannot publish /diagnostics: {e}")
            });
        }
        previous = Some(snapshot);
    }
}

/// The worker's publishers: one per output topic of the enabled heads.
struct HeadPublishers {
    mask: r2r::Publisher<Image>,
    overlay: r2r::Publisher<Image>,
    instances: r2r::Publisher<Image>,
    detections: r2r::Publisher<Detection2DArray>,
    class_names: Vec<String>,
    depth: Option<r2r::Publisher<Image>>,
    pose: Option<r2r::Publisher<PoseWithCovarianceStamped>>,
    grasps: Option<GraspPublishers>,
}

struct GraspPublishers {
    grasps: r2r::Publisher<GraspArray>,
    poses: r2r::Publisher<PoseArray>,
    markers: r2r::Publisher<MarkerArray>,
}

fn worker_loop(shared: &Shared, config: &NodeConfig, pipeline: &Pipeline, heads: &HeadPublishers) {
    loop {
        let Some(pending) = shared.queue.pop(Duration::from_millis(100)) else {
            if shared.queue.is_closed() && shared.queue.is_empty() {
                return;
            }
            continue;
        };
        // A frame queued before any camera_info came takes the one known now.
        let camera = pending
            .camera
            .or(*shared.camera.lock().expect("camera lock"));
        let frame = match decode_frame(
            &pending.image,
            pending.depth.as_ref(),
            camera,
            config.max_image_pixels,
        ) {
            Ok(frame) => frame,
            Err(e) => {
                shared.drop_frame(DropReason::Malformed);
                shared.warn_throttled(input_error_key(&e), || format!("skipping frame: {e}"));
                continue;
            }
        };
        let params = shared.params.lock().expect("params lock").0.clone();
        let options = InferOptions {
            overlay: heads
                .overlay
                .get_inter_process_subscription_count()
                .unwrap_or(0)
                > 0,
            overlay_alpha: params.overlay_alpha as f32,
            min_instance_px: params.min_instance_px as u32,
            grasp_top_k: params.grasp_top_k as usize,
            grasp_min_quality: params.grasp_min_quality as f32,
            // validate() checked it at start-up and the run-time parameter service at each change.
            workspace: params.workspace_box().unwrap_or(None),
        };
        let outputs = match pipeline.infer(&frame, &options) {
            Ok(outputs) => outputs,
            Err(e) => {
                let reason = match e {
                    PipelineError::Input(_) => DropReason::Malformed,
                    _ => DropReason::InferenceFailed,
                };
                shared.drop_frame(reason);
                shared.warn_throttled("inference", || format!("skipping frame: {e}"));
                continue;
            }
        };
        let publish_started = Instant::now();
        let messages =
            OutputMessages::new(&pending.image.header, &outputs, config, &heads.class_names);
        let mut published = heads.mask.publish(&messages.mask);
        if let Some(overlay) = &messages.overlay {
            published = published.and(heads.overlay.publish(overlay));
        }
        published = published
            .and(heads.instances.publish(&messages.instances))
            .and(heads.detections.publish(&messages.detections));
        if let (Some(publisher), Some(depth)) = (&heads.depth, &messages.depth) {
            published = published.and(publisher.publish(depth));
        }
        if let (Some(p), Some((grasps, poses, markers))) = (&heads.grasps, &messages.grasps) {
            published = published
                .and(p.grasps.publish(grasps))
                .and(p.poses.publish(poses))
                .and(p.markers.publish(markers));
        }
        if let (Some(publisher), Some(pose)) = (&heads.pose, &messages.pose) {
            published = published.and(publisher.publish(pose));
        }
        if let Err(e) = published {
            shared.warn_throttled("publish", || format!("cannot publish outputs: {e}"));
        }
        let done = Instant::now();
        shared.stats.lock().expect("stats lock").processed(
            &outputs.timings,
            done - publish_started,
            done - pending.received_at,
        );
    }
}

/// One throttle key per kind of problem, so a flood of one kind does not hide another.
fn input_error_key(e: &InputError) -> &'static str {
    match e {
        InputError::UnknownEncoding { .. } => "encoding",
        InputError::ZeroSize { .. } => "zero_size",
        InputError::TooLarge { .. } => "too_large",
        InputError::StepTooSmall { .. } => "step",
        InputError::DataTooShort { .. } => "data_short",
        InputError::DepthSizeMismatch { .. } => "depth_size",
        InputError::OpenCv(_) => "opencv",
    }
}
