"""launch/perception.launch.py, checked without launch_ros (which does not install here):
it parses, and the package, executable, parameter file and remapped names it names exist."""
import ast
import re

import yaml

from launch_cmdline import LAUNCH_FILE, ROOT, SHARE, LaunchFile

NODE_SOURCE = (ROOT / 'src' / 'ros' / 'node.rs').read_text()


def test_launch_file_parses_and_declares_what_it_uses():
    launch = LaunchFile()
    assert set(launch.declared) >= {'namespace', 'params_file', 'device', 'use_sim_time'}
    assert launch.used_configurations() <= set(launch.declared)
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), 'exec')
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in launch.tree.body)


def test_package_and_executable_exist():
    launch = LaunchFile()
    assert launch.literal('package') == re.search(r'<name>(\w+)</name>', (ROOT / 'package.xml').read_text())[1]
    assert launch.literal('executable') in (ROOT / 'Cargo.toml').read_text()
    exe = ROOT / '.ws' / 'install' / 'perception' / 'lib' / 'perception' / launch.literal('executable')
    assert exe.is_file(), f'{exe}: colcon build did not install the node'


def test_remapped_names_are_the_nodes_subscriptions():
    launch = LaunchFile()
    remapped = [ast.literal_eval(pair.elts[0]) for pair in launch.node['remappings'].elts]
    assert sorted(remapped) == ['camera_info', 'depth', 'image']
    for name in remapped:
        assert f'"{name}", ' in NODE_SOURCE, f'node does not subscribe to {name}'


def test_default_parameter_file_is_installed_and_names_only_known_parameters():
    params_file = SHARE / 'config' / 'perception.yaml'
    assert params_file.is_file()
    params = yaml.safe_load(params_file.read_text())['/**']['ros__parameters']
    for name in params:
        assert re.search(rf'pub {name}: ', (ROOT / 'src' / 'ros' / 'params.rs').read_text()), name
    dict_params = [k.value for item in LaunchFile().node['parameters'].elts
                   if isinstance(item, ast.Dict) for k in item.keys]
    assert set(dict_params) <= set(params) | {'use_sim_time'}
    assert (SHARE / 'models' / params['segmentation_model'] / 'model.yaml').is_file()


def test_command_line_follows_the_launch_arguments():
    args = LaunchFile().ros_arguments(namespace='robot1', device='cpu', image='/cam/rgb')
    assert args[:3] == ['--ros-args', '-r', '__node:=perception_node']
    assert '__ns:=/robot1' in args and 'device:=cpu' in args and 'image:=/cam/rgb' in args
    assert args[args.index('--params-file') + 1] == str(SHARE / 'config' / 'perception.yaml')
    assert 'use_sim_time:=false' in args
