"""The colcon install tree of both packages (built by scripts/setup.sh), as a ROS 2 user gets it."""
import importlib

from launch_cmdline import ROOT

INSTALL = ROOT / '.ws' / 'install'


def test_both_packages_are_in_the_ament_index():
    for pkg in ('perception', 'perception_msgs'):
        assert (INSTALL / pkg / 'share' / pkg / 'package.xml').is_file()
        assert (INSTALL / pkg / 'share' / 'ament_index' / 'resource_index' / 'packages' / pkg).exists(), pkg


def test_node_launch_config_and_models_are_installed():
    share = INSTALL / 'perception' / 'share' / 'perception'
    for path in ('launch/perception.launch.py', 'config/perception.yaml', 'models/unet_seg_untrained/model.yaml'):
        assert (share / path).is_file(), path
    assert (INSTALL / 'perception' / 'lib' / 'perception' / 'perception_node').is_file()


def test_interface_messages_import_with_documented_fields():
    msg = importlib.import_module('perception_msgs.msg')
    detection = msg.Detection2D()
    for field in ('class_id', 'label', 'score', 'center_x_px', 'center_y_px', 'width_px', 'height_px',
                  'instance_id', 'centroid_m', 'centroid_valid'):
        assert hasattr(detection, field), field
    grasp = msg.Grasp()
    for field in ('gripper_type', 'pose', 'quality', 'width_m', 'center_x_px', 'center_y_px', 'angle_rad',
                  'approach_depth_m', 'instance_id'):
        assert hasattr(grasp, field), field
    assert msg.Grasp.GRIPPER_SUCTION == 1
    assert hasattr(msg.Detection2DArray(), 'header') and hasattr(msg.GraspArray(), 'grasps')
    for name in ('Detection2D', 'Grasp'):
        text = (ROOT / 'perception_msgs' / 'msg' / f'{name}.msg').read_text().splitlines()
        fields = [i for i, line in enumerate(text) if line and not line.startswith('#') and '=' not in line]
        for i in fields:
            # A comment above the field or above its group of fields (e.g. centre x and y).
            j = i - 1
            while j in fields:
                j -= 1
            assert text[j].startswith('#'), f'{name}.msg field without a comment: {text[i]}'
