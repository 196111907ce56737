"""Start perception_node: `ros2 launch perception perception.launch.py [arg:=value ...]`.

Arguments: namespace, params_file, device, use_sim_time, and the input topics image,
depth, camera_info (remapped onto the node's relative names).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('perception')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its topics'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'perception.yaml'),
                              description='ROS parameters file (see config/perception.yaml)'),
        DeclareLaunchArgument('device', default_value='auto',
                              description='auto | cpu | cuda:N'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Follow /clock (rosbag2 replay with --clock)'),
        DeclareLaunchArgument('image', default_value='/camera/color/image_raw',
                              description='Colour image topic (rgb8, bgr8, rgba8, bgra8, mono8)'),
        DeclareLaunchArgument('depth', default_value='/camera/aligned_depth_to_color/image_raw',
                              description='Registered depth topic (16UC1 mm or 32FC1 m)'),
        DeclareLaunchArgument('camera_info', default_value='/camera/color/camera_info',
                              description='CameraInfo of the colour camera'),
        Node(
            package='perception',
            executable='perception_node',
            name='perception_node',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            parameters=[
                LaunchConfiguration('params_file'),
                {
                    'device': LaunchConfiguration('device'),
                    'use_sim_time': LaunchConfiguration('use_sim_time'),
                    'models_dir': os.path.join(share, 'models'),
                },
            ],
            remappings=[
                ('image', LaunchConfiguration('image')),
                ('depth', LaunchConfiguration('depth')),
                ('camera_info', LaunchConfiguration('camera_info')),
            ],
        ),
    ])
